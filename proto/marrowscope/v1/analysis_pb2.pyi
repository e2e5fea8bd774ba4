from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_DONE: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class FatMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAT_METHOD_UNSPECIFIED: _ClassVar[FatMethod]
    FAT_METHOD_ROBUST: _ClassVar[FatMethod]
    FAT_METHOD_SEED: _ClassVar[FatMethod]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_DONE: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
FAT_METHOD_UNSPECIFIED: FatMethod
FAT_METHOD_ROBUST: FatMethod
FAT_METHOD_SEED: FatMethod

class FileSlide(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class DicomWebSlide(_message.Message):
    __slots__ = ("pacs", "study_instance_uid", "series_instance_uid")
    PACS_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    pacs: str
    study_instance_uid: str
    series_instance_uid: str
    def __init__(self, pacs: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ...) -> None: ...

class SlideReference(_message.Message):
    __slots__ = ("file", "dicomweb")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DICOMWEB_FIELD_NUMBER: _ClassVar[int]
    file: FileSlide
    dicomweb: DicomWebSlide
    def __init__(self, file: _Optional[_Union[FileSlide, _Mapping]] = ..., dicomweb: _Optional[_Union[DicomWebSlide, _Mapping]] = ...) -> None: ...

class AnalysisParameters(_message.Message):
    __slots__ = ("segmenter", "model", "tta", "fat_method", "mpp_override", "tile_size", "overlap", "min_marrow_area_mm2")
    SEGMENTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TTA_FIELD_NUMBER: _ClassVar[int]
    FAT_METHOD_FIELD_NUMBER: _ClassVar[int]
    MPP_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MIN_MARROW_AREA_MM2_FIELD_NUMBER: _ClassVar[int]
    segmenter: str
    model: str
    tta: bool
    fat_method: FatMethod
    mpp_override: float
    tile_size: int
    overlap: int
    min_marrow_area_mm2: float
    def __init__(self, segmenter: _Optional[str] = ..., model: _Optional[str] = ..., tta: _Optional[bool] = ..., fat_method: _Optional[_Union[FatMethod, str]] = ..., mpp_override: _Optional[float] = ..., tile_size: _Optional[int] = ..., overlap: _Optional[int] = ..., min_marrow_area_mm2: _Optional[float] = ...) -> None: ...

class SubmitAnalysisRequest(_message.Message):
    __slots__ = ("slide", "outputs", "parameters", "idempotency_key")
    SLIDE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    slide: SlideReference
    outputs: _containers.RepeatedScalarFieldContainer[str]
    parameters: AnalysisParameters
    idempotency_key: str
    def __init__(self, slide: _Optional[_Union[SlideReference, _Mapping]] = ..., outputs: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Union[AnalysisParameters, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitAnalysisResponse(_message.Message):
    __slots__ = ("job_id", "state", "created")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    created: bool
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetAnalysisRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetAnalysisResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchAnalysisRequest(_message.Message):
    __slots__ = ("job_id", "cancel_on_disconnect")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    cancel_on_disconnect: bool
    def __init__(self, job_id: _Optional[str] = ..., cancel_on_disconnect: _Optional[bool] = ...) -> None: ...

class WatchAnalysisResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelAnalysisRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelAnalysisResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListAnalysesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[JobState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ...) -> None: ...

class ListAnalysesResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetArtifactRequest(_message.Message):
    __slots__ = ("job_id", "name")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetArtifactResponse(_message.Message):
    __slots__ = ("data", "offset", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "tiles_done", "tiles_total", "eta_seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TILES_DONE_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    tiles_done: int
    tiles_total: int
    eta_seconds: float
    def __init__(self, stage: _Optional[str] = ..., tiles_done: _Optional[int] = ..., tiles_total: _Optional[int] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("cellularity_pct", "cell_coverage_pct", "adipocyte_ratio_pct", "marrow_area_mm2", "qc_flags", "warnings", "artifacts", "elapsed_seconds", "segmenter")
    CELLULARITY_PCT_FIELD_NUMBER: _ClassVar[int]
    CELL_COVERAGE_PCT_FIELD_NUMBER: _ClassVar[int]
    ADIPOCYTE_RATIO_PCT_FIELD_NUMBER: _ClassVar[int]
    MARROW_AREA_MM2_FIELD_NUMBER: _ClassVar[int]
    QC_FLAGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTER_FIELD_NUMBER: _ClassVar[int]
    cellularity_pct: float
    cell_coverage_pct: float
    adipocyte_ratio_pct: float
    marrow_area_mm2: float
    qc_flags: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    elapsed_seconds: float
    segmenter: str
    def __init__(self, cellularity_pct: _Optional[float] = ..., cell_coverage_pct: _Optional[float] = ..., adipocyte_ratio_pct: _Optional[float] = ..., marrow_area_mm2: _Optional[float] = ..., qc_flags: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., artifacts: _Optional[_Iterable[str]] = ..., elapsed_seconds: _Optional[float] = ..., segmenter: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "progress", "attempts", "failure_reason", "idempotency_key", "created_unix", "updated_unix", "summary", "cancel_requested")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    progress: Progress
    attempts: int
    failure_reason: str
    idempotency_key: str
    created_unix: float
    updated_unix: float
    summary: Summary
    cancel_requested: bool
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., attempts: _Optional[int] = ..., failure_reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., created_unix: _Optional[float] = ..., updated_unix: _Optional[float] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., cancel_requested: _Optional[bool] = ...) -> None: ...
