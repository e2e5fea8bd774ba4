-- Orthanc → marrowscope routing: send every new slide-microscopy series to the marrowscope SCP.
--
-- OnStableSeries fires once a series has received no new instance for "StableAge" seconds
-- (orthanc.json). Only Modality SM (VL Whole Slide Microscopy) is routed; marrowscope's own
-- results (Modality SR and ANN) come back into the same study and are never routed again.
--
-- MARROWSCOPE_MODALITY must name an entry of "DicomModalities" in orthanc.json.

MARROWSCOPE_MODALITY = 'marrowscope'

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] ~= 'SM' then
    return
  end
  -- Asynchronous store job: visible (and re-runnable) under /jobs if marrowscope is down.
  local ok, answer = pcall(RestApiPost,
    '/modalities/' .. MARROWSCOPE_MODALITY .. '/store',
    '{"Resources": ["' .. seriesId .. '"], "Synchronous": false, "Priority": 0}')
  if ok then
    print('marrowscope: routed SM series ' .. seriesId)
  else
    print('marrowscope: could not route SM series ' .. seriesId .. ': ' .. tostring(answer))
  end
end
