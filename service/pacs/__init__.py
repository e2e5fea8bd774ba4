"""The PACS loop: a stable series from the SCP becomes an analysis job, its results go back."""
