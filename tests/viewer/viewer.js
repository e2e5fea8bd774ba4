/*
 * Renders a slide and our Microscopy Bulk Simple Annotations with dicom-microscopy-viewer.
 * Query: ?study=<uid>&slide=<series uid>&ann=<series uid>. Sets window.__status to "ready" or
 * "error: ..." for the headless driver.
 *
 * Orthanc 1.10's DICOMweb plugin mis-serialises OF/OD/OL values (point coordinates, point
 * indices, measurement values) in WADO-RS metadata, so we replace every OF/OD/OL element of
 * the annotation metadata with InlineBinary read from the stored instance (Orthanc REST:
 * /instances/{id}/content/{tag path}).
 */
(async function main() {
  const params = new URLSearchParams(window.location.search);
  const study = params.get('study');
  const slideSeries = params.get('slide');
  const annSeries = params.get('ann');
  const dmv = window.dicomMicroscopyViewer;
  const client = new window.DICOMwebClient.api.DICOMwebClient({ url: '/dicom-web' });
  try {
    const slideMetadata = await client.retrieveSeriesMetadata({
      studyInstanceUID: study, seriesInstanceUID: slideSeries,
    });
    const images = slideMetadata
      .map((m) => new dmv.metadata.VLWholeSlideMicroscopyImage({ metadata: m }))
      .filter((image) => image.ImageType[2] === 'VOLUME');
    const viewer = new dmv.viewer.VolumeImageViewer({ client, metadata: images });
    viewer.render({ container: document.getElementById('viewer') });
    window.__viewer = viewer;

    const annMetadata = await client.retrieveSeriesMetadata({
      studyInstanceUID: study, seriesInstanceUID: annSeries,
    });
    const groups = [];
    for (const raw of annMetadata) {
      await patchBinaryValues(raw);
      const ann = new dmv.metadata.MicroscopyBulkSimpleAnnotations({ metadata: raw });
      viewer.addAnnotationGroups(ann);
      for (const item of ann.AnnotationGroupSequence) {
        viewer.showAnnotationGroup(item.AnnotationGroupUID);
        groups.push(item.AnnotationGroupLabel);
      }
    }
    window.__groups = groups;
    window.__status = 'ready';
  } catch (error) {
    console.error(error);
    window.__status = 'error: ' + (error && error.message ? error.message : String(error));
  }
})();

const BINARY_VRS = new Set(['OF', 'OD', 'OL']);

async function orthancInstanceId(sopInstanceUID) {
  const response = await fetch('/tools/lookup', { method: 'POST', body: sopInstanceUID });
  const found = await response.json();
  const hit = found.find((entry) => entry.Type === 'Instance');
  if (!hit) throw new Error('instance ' + sopInstanceUID + ' not found in Orthanc');
  return hit.ID;
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function formatTag(tag) {
  return tag.slice(0, 4).toLowerCase() + '-' + tag.slice(4).toLowerCase();
}

/* Walks DICOM JSON; replaces each OF/OD/OL element by InlineBinary of the stored bytes. */
async function patchBinaryValues(dataset) {
  const id = await orthancInstanceId(dataset['00080018'].Value[0]);
  const jobs = [];
  const walk = (node, path) => {
    for (const [tag, element] of Object.entries(node)) {
      if (element.vr === 'SQ' && Array.isArray(element.Value)) {
        element.Value.forEach((item, index) => walk(item, path.concat([formatTag(tag), index])));
      } else if (BINARY_VRS.has(element.vr)) {
        const url = '/instances/' + id + '/content/' + path.concat([formatTag(tag)]).join('/');
        jobs.push(fetch(url).then(async (response) => {
          if (!response.ok) throw new Error('cannot read ' + url + ': ' + response.status);
          const raw = await response.arrayBuffer();
          delete element.Value;
          delete element.BulkDataURI;
          element.InlineBinary = toBase64(raw);
        }));
      }
    }
  };
  walk(dataset, []);
  await Promise.all(jobs);
}
