// Node's @google-cloud/tasks and @google-cloud/scheduler against the emulator, one transport per run.
//
//   node clients.cjs '{"modules": DIR, "transport": "grpc"|"rest", "host": ..., "grpcPort": ...,
//                      "httpPort": ..., "location": "projects/P/locations/L", "ident": ..., "target": URL}'
//
// `modules` is the node_modules folder the test installed (outside the repository). Each scenario
// family runs on its own and records what the clients returned, or the error they raised (its
// gRPC `code`, `details`/`message`), as JSON on stdout; the Python test asserts on it, so a failing
// step shows up as that family's failure, not as a crashed run.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const {createRequire} = require('node:module');

const args = JSON.parse(process.argv[2]);
const load = createRequire(path.join(args.modules, 'package.json'));
const {CloudTasksClient} = load('@google-cloud/tasks');
const {CloudSchedulerClient} = load('@google-cloud/scheduler');
const gax = load('google-gax');

// An auth client that adds no token and never looks for credentials (without it gax asks the
// GCE metadata server for the universe domain). gRPC: insecure channel credentials replace
// Google's TLS + token ones (gax uses sslCreds as given); `grpc-deflate` and `grpc-gzip` also
// compress every request (grpc-js' channel option). REST (`fallback: true`): plain HTTP.
const authClient = new gax.googleAuthLibrary.PassThroughClient();
const channels = {
  'grpc': {},
  'grpc-deflate': {'grpc.default_compression_algorithm': 1},
  'grpc-gzip': {'grpc.default_compression_algorithm': 2},
};
const options = args.transport in channels
  ? {apiEndpoint: args.host, port: args.grpcPort, authClient,
     sslCreds: gax.grpc.credentials.createInsecure(), ...channels[args.transport]}
  : {apiEndpoint: args.host, port: args.httpPort, authClient, protocol: 'http', fallback: true};
const tasks = new CloudTasksClient(options);
const scheduler = new CloudSchedulerClient(options);
const {location, ident, target, audience, serviceAccount} = args;
const HOUR = 3600;

const BIG_BODY = Buffer.from('node '.repeat(60000));  // 300 kB: past HTTP/2's 64 kB window

function plain(value) {
  // Protobuf messages (Long, Buffer, enums) as JSON-friendly values; a large body as its digest.
  return JSON.parse(JSON.stringify(value, (key, v) => {
    if (v && v.type === 'Buffer' && Array.isArray(v.data)) {
      const bytes = Buffer.from(v.data);
      return bytes.length > 1000 ? digest(bytes) : bytes.toString('utf8');
    }
    if (v && typeof v === 'object' && 'low' in v && 'high' in v && 'unsigned' in v) return Number(v.toString());
    return v;
  }));
}

function digest(bytes) {
  return {bytes: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex')};
}

function failure(error) {
  const out = {code: error.code ?? null, message: error.details ?? error.message};
  // gax 5's REST transport raises gaxios' error as it is: `code` is the HTTP status and the
  // message Google's JSON error body (googleapis/gax-nodejs#1803), whose `status` names the code.
  try {
    const body = JSON.parse(error.message).error;
    Object.assign(out, {status: body.status, message: body.message});
  } catch {
    // not a JSON body: a gRPC error, or no answer at all
  }
  return out;
}

// The error a call raises (`{code, details, message}`), or `{returned: ...}` if it raised none.
async function raised(call) {
  try {
    return {returned: plain(await call)};
  } catch (error) {
    return failure(error);
  }
}

function future(seconds) {
  return {seconds: Math.floor(Date.now() / 1000) + seconds};
}

async function queues() {
  const out = {};
  const name = `${location}/queues/${ident}-queues`;
  const [created] = await tasks.createQueue({parent: location, queue: {
    name, rateLimits: {maxDispatchesPerSecond: 5}, retryConfig: {maxAttempts: 3}}});
  out.created = plain(created);
  out.got = plain((await tasks.getQueue({name}))[0]);
  out.listed = (await tasks.listQueues({parent: location}))[0].map(q => q.name);
  const [updated] = await tasks.updateQueue({
    queue: {name, rateLimits: {maxDispatchesPerSecond: 7, maxConcurrentDispatches: 99}},
    updateMask: {paths: ['rate_limits.max_dispatches_per_second']}});
  out.updated = plain(updated);
  // A masked field left unset is reset; over REST gax sends this queue as the body `""`.
  out.reset = plain((await tasks.updateQueue({
    queue: {name}, updateMask: {paths: ['retry_config']}}))[0]);
  out.paused = plain((await tasks.pauseQueue({name}))[0]);
  out.resumed = plain((await tasks.resumeQueue({name}))[0]);
  await tasks.pauseQueue({name});  // keeps the task below from being delivered
  await tasks.createTask({parent: name, task: {httpRequest: {url: `${target}/${ident}/purged`}}});
  out.tasks_before_purge = (await tasks.listTasks({parent: name}))[0].length;
  out.purged = plain((await tasks.purgeQueue({name}))[0]);
  out.tasks_after_purge = (await tasks.listTasks({parent: name}))[0].length;
  await tasks.deleteQueue({name});
  out.get_deleted = await raised(tasks.getQueue({name}));
  return out;
}

async function tasksFamily() {
  const out = {};
  const queue = `${location}/queues/${ident}-tasks`;
  await tasks.createQueue({parent: location, queue: {name: queue}});
  await tasks.pauseQueue({name: queue});  // nothing is delivered unless RunTask asks
  const named = `${queue}/tasks/named-${ident}`;
  const httpRequest = {url: `${target}/${ident}/run?from=node`, httpMethod: 'PUT',
                       headers: {'Content-Type': 'application/json', 'X-From': 'node'},
                       body: Buffer.from('{"hello": "node"}')};
  const [created] = await tasks.createTask({parent: queue, responseView: 'FULL', task: {
    name: named, httpRequest, dispatchDeadline: {seconds: 60, nanos: 500000000}}});
  out.created = plain(created);
  out.duplicate = await raised(tasks.createTask({parent: queue, task: {name: named, httpRequest}}));
  const [generated] = await tasks.createTask({parent: queue, task: {
    httpRequest: {url: `${target}/${ident}/later`}, scheduleTime: future(HOUR)}});
  out.generated = plain(generated);
  out.got = plain((await tasks.getTask({name: named, responseView: 'FULL'}))[0]);
  out.got_basic = plain((await tasks.getTask({name: named}))[0]);
  out.listed = (await tasks.listTasks({parent: queue}))[0].map(t => t.name).sort();
  out.pages = [];  // one task a page, following nextPageToken (bounded: there are two)
  let request = {parent: queue, pageSize: 1};
  while (request && out.pages.length < 5) {
    const [page, next] = await tasks.listTasks(request, {autoPaginate: false});
    out.pages.push(page.map(t => t.name));
    request = next;
  }
  out.run = plain((await tasks.runTask({name: named}))[0]);
  await tasks.deleteTask({name: generated.name});
  out.get_deleted = await raised(tasks.getTask({name: generated.name}));
  out.recreate_deleted = await raised(tasks.createTask({parent: queue, task: {
    name: generated.name, httpRequest: {url: `${target}/${ident}/again`}}}));
  const [big] = await tasks.createTask({parent: queue, responseView: 'FULL', task: {
    httpRequest: {url: `${target}/${ident}/big`, body: BIG_BODY}}});
  out.big_sent = digest(BIG_BODY);
  out.big_created = plain(big.httpRequest.body);
  out.big_got = plain((await tasks.getTask({name: big.name, responseView: 'FULL'}))[0].httpRequest.body);
  out.big_run = plain((await tasks.runTask({name: big.name}))[0]).name === big.name;
  const [signed] = await tasks.createTask({parent: queue, task: {httpRequest: {
    url: `${target}/secure/fixed/${ident}`, oidcToken: {serviceAccountEmail: serviceAccount, audience}}}});
  out.signed = plain(signed.httpRequest);
  await tasks.runTask({name: signed.name});
  return out;
}

async function jobs() {
  const out = {};
  const name = `${location}/jobs/${ident}-job`;
  const [created] = await scheduler.createJob({parent: location, job: {
    name, description: 'from node', schedule: '0 0 1 1 *', timeZone: 'Europe/Paris',
    httpTarget: {uri: `${target}/${ident}/job`, httpMethod: 'POST', body: Buffer.from('tick'),
                 headers: {'Content-Type': 'text/plain'}},
    retryConfig: {retryCount: 2, minBackoffDuration: {seconds: 1}}, attemptDeadline: {seconds: 30}}});
  out.created = plain(created);
  out.got = plain((await scheduler.getJob({name}))[0]);
  out.listed = (await scheduler.listJobs({parent: location}))[0].map(j => j.name);
  const [updated] = await scheduler.updateJob({
    job: {name, description: 'updated by node', schedule: '5 0 1 1 *'},
    updateMask: {paths: ['description']}});
  out.updated = plain(updated);
  out.cleared = plain((await scheduler.updateJob({
    job: {name}, updateMask: {paths: ['description']}}))[0]);  // REST body `""` too
  out.paused = plain((await scheduler.pauseJob({name}))[0]);
  out.pause_again = await raised(scheduler.pauseJob({name}));
  out.resumed = plain((await scheduler.resumeJob({name}))[0]);
  out.run = plain((await scheduler.runJob({name}))[0]);
  await scheduler.deleteJob({name});
  out.get_deleted = await raised(scheduler.getJob({name}));
  const [unnamed] = await scheduler.createJob({parent: location, job: {  // Google names it
    schedule: '0 0 1 1 *', httpTarget: {uri: `${target}/${ident}/unnamed`}}});
  out.generated = unnamed.name;
  await scheduler.deleteJob({name: unnamed.name});
  return out;
}

async function burst() {
  // Concurrent calls: over REST gax opens a connection for each, past the emulator's
  // --http-max-connections (256).
  const queue = `${location}/queues/${ident}-burst`;
  await tasks.createQueue({parent: location, queue: {name: queue}});
  await tasks.pauseQueue({name: queue});
  const settled = await Promise.allSettled(Array.from({length: 300}, () => tasks.createTask(
    {parent: queue, task: {httpRequest: {url: `${target}/${ident}/burst`}}})));
  const failed = settled.filter(r => r.status === 'rejected');
  return {created: settled.length - failed.length, first_failure: failed[0] ? failure(failed[0].reason) : null,
          listed: (await tasks.listTasks({parent: queue}))[0].length};
}

async function errors() {
  const queue = `${location}/queues/${ident}-errors`;
  const job = `${location}/jobs/${ident}-errors`;
  await tasks.createQueue({parent: location, queue: {name: queue}});
  await tasks.pauseQueue({name: queue});
  const jobBody = {name: job, schedule: '0 0 1 1 *', httpTarget: {uri: `${target}/${ident}/never`}};
  await scheduler.createJob({parent: location, job: jobBody});
  const url = `${target}/${ident}/never`;
  return {
    get_missing_queue: await raised(tasks.getQueue({name: `${location}/queues/${ident}-none`})),
    create_existing_queue: await raised(tasks.createQueue({parent: location, queue: {name: queue}})),
    get_missing_task: await raised(tasks.getTask({name: `${queue}/tasks/none`})),
    delete_missing_task: await raised(tasks.deleteTask({name: `${queue}/tasks/none`})),
    run_missing_task: await raised(tasks.runTask({name: `${queue}/tasks/none`})),
    bad_url: await raised(tasks.createTask({parent: queue, task: {httpRequest: {url: 'ftp://x/y'}}})),
    bad_task_id: await raised(tasks.createTask({parent: queue, task: {
      name: `${queue}/tasks/not an id`, httpRequest: {url}}})),
    bad_retry: await raised(tasks.updateQueue({queue: {name: queue, retryConfig: {
      minBackoff: {seconds: 10}, maxBackoff: {seconds: 1}}}})),
    create_existing_job: await raised(scheduler.createJob({parent: location, job: jobBody})),
    bad_schedule: await raised(scheduler.createJob({parent: location, job: {
      ...jobBody, name: `${job}-bad`, schedule: 'every blue moon'}})),
    bad_time_zone: await raised(scheduler.createJob({parent: location, job: {
      ...jobBody, name: `${job}-zone`, timeZone: 'Mars/Olympus_Mons'}})),
    get_missing_job: await raised(scheduler.getJob({name: `${job}-none`})),
    update_missing_job: await raised(scheduler.updateJob({
      job: {name: `${job}-none`, description: 'x'}, updateMask: {paths: ['description']}})),
  };
}

async function main() {
  const results = {transport: args.transport};
  for (const [family, run] of Object.entries({queues, tasks: tasksFamily, jobs, burst, errors})) {
    try {
      results[family] = await run();
    } catch (error) {
      results[family] = {crashed: failure(error), stack: error.stack};
    }
  }
  await Promise.all([tasks.close(), scheduler.close()]);
  process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch(error => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
