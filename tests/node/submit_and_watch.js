#!/usr/bin/env node
// Submits a slide to marrowscope over gRPC and watches the job until it ends.
// Usage: node submit_and_watch.js HOST:PORT TOKEN SLIDE_PATH [MPP]
// Prints one JSON line per WatchAnalysis update; exits 0 if the job ends DONE.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');

function main() {
  const [target, token, slidePath, mpp] = process.argv.slice(2);
  if (!target || !token || !slidePath) {
    console.error('usage: submit_and_watch.js HOST:PORT TOKEN SLIDE_PATH [MPP]');
    process.exit(2);
  }
  const definition = protoLoader.loadSync('marrowscope/v1/analysis.proto', {
    includeDirs: [PROTO_ROOT], keepCase: true, enums: String, longs: Number, defaults: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).marrowscope.v1;
  const client = new v1.AnalysisService(target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);

  const parameters = { segmenter: 'fake', tile_size: 64, overlap: 8 };
  if (mpp) parameters.mpp_override = Number(mpp);
  const request = { slide: { file: { path: slidePath } }, outputs: ['geojson'], parameters };
  const deadline = new Date(Date.now() + 30000);

  client.SubmitAnalysis(request, metadata, { deadline }, (err, reply) => {
    if (err) {
      console.error(`SubmitAnalysis failed: ${grpc.status[err.code]}: ${err.details}`);
      process.exit(1);
    }
    console.log(JSON.stringify({ submitted: reply.job_id, state: reply.state, created: reply.created }));
    const call = client.WatchAnalysis({ job_id: reply.job_id }, metadata);
    let last = null;
    call.on('data', (update) => {
      last = update.job;
      const p = last.progress || {};
      console.log(JSON.stringify({ state: last.state, stage: p.stage, tiles_done: p.tiles_done,
                                   tiles_total: p.tiles_total,
                                   artifacts: last.summary ? last.summary.artifacts : [] }));
    });
    call.on('error', (e) => {
      console.error(`WatchAnalysis failed: ${grpc.status[e.code]}: ${e.details}`);
      process.exit(1);
    });
    call.on('end', () => {
      client.close();
      process.exit(last && last.state === 'JOB_STATE_DONE' ? 0 : 1);
    });
  });
}

main();
