/**
 * The orchestrated farm's files, checked without a cluster (no Kubernetes-aware validator is
 * packaged for this machine): deploy/kubernetes/*.yaml and docker/stack.yml parse as YAML; every
 * Kubernetes object has a known kind and apiVersion; selectors match their pod labels; Services
 * reach ports the pods name; env names are ones the daemon, the peers or the rig read; $(VAR)
 * references point at variables defined before them; each replica's resume URL names it through
 * the StatefulSet's headless Service; and every program path the files run exists in the build.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { SETTINGS } from '@spiwire/server/internals';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const K8S = join(ROOT, 'deploy', 'kubernetes');

type Obj = Record<string, any>;

const KINDS: Record<string, string> = { Service: 'v1', StatefulSet: 'apps/v1', Deployment: 'apps/v1', Job: 'batch/v1' };

/** Environment variables each program reads: the daemon's from its settings table, the others' from their sources. */
const daemonEnv = new Set([...SETTINGS.map((s) => s.env), 'SPIWIRE_TOKEN_FILE']);
const sourceOf = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const peersSource = sourceOf('server/src/tools/peers.ts');
const rigSource = sourceOf('test/rig/compose-rig.ts');

function load(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

/** The program a container runs: /app/<path> in the image is <path> in the build. */
function programExists(args: readonly string[]): boolean {
  const js = args.find((a) => a.startsWith('/app/') && a.endsWith('.js'));
  return js === undefined || existsSync(join(ROOT, js.slice('/app/'.length)));
}

/** Which program a container runs, by its command (the daemon when it runs the image's default). */
function programOf(command: readonly string[] | undefined): 'daemon' | 'peers' | 'rig' {
  const c = (command ?? []).join(' ');
  if (c.includes('tools/peers.js')) return 'peers';
  if (c.includes('rig/compose-rig.js')) return 'rig';
  return 'daemon';
}

function envReadBy(program: 'daemon' | 'peers' | 'rig', name: string): boolean {
  if (program === 'daemon') return daemonEnv.has(name) || !name.startsWith('SPIWIRE_');
  return (program === 'peers' ? peersSource : rigSource).includes(`'${name}'`);
}

const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml'));
const objects = files.flatMap((f) => load(join(K8S, f)).map((o) => ({ file: f, o })));
const workloads = objects.filter(({ o }) => o['kind'] !== 'Service');
const podLabels = (w: Obj): Obj => w['spec']['template']['metadata']['labels'];
const containersOf = (w: Obj): Obj[] => w['spec']['template']['spec']['containers'];
const subset = (a: Obj, b: Obj): boolean => Object.entries(a).every(([k, v]) => b[k] === v);

t.test('Kubernetes: every object has a known kind and apiVersion, and a name', async (t) => {
  t.ok(files.length >= 3, `manifests: ${files.join(', ')}`);
  for (const { file, o } of objects) {
    t.equal(o['apiVersion'], KINDS[o['kind']], `${file}: ${o['kind']} ${o['metadata']?.['name']}`);
    t.match(o['metadata']?.['name'], /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${file}: a DNS-1123 name`);
  }
});

t.test('Kubernetes: selectors match their pod labels; Services reach ports their pods name', async (t) => {
  for (const { file, o } of workloads) {
    const selector = o['spec']['selector']?.['matchLabels'];
    if (o['kind'] !== 'Job') t.ok(selector && subset(selector, podLabels(o)), `${file}: ${o['kind']} ${o['metadata']['name']} selects its own pods`);
    for (const c of containersOf(o)) t.ok(programExists([...(c['command'] ?? []), ...(c['args'] ?? [])]), `${file}: ${c['name']} runs a program the build has`);
  }
  for (const { file, o } of objects.filter(({ o }) => o['kind'] === 'Service')) {
    const name = o['metadata']['name'];
    const targets = workloads.filter(({ o: w }) => o['spec']['selector'] && subset(o['spec']['selector'], podLabels(w)));
    t.equal(targets.length, 1, `${file}: Service ${name} selects one workload's pods`);
    const ports = new Map<string, Obj>();
    for (const c of containersOf(targets[0]!.o)) for (const p of c['ports'] ?? []) ports.set(p['name'], p);
    for (const p of o['spec']['ports']) {
      const target = ports.get(p['targetPort']);
      t.ok(target, `${file}: Service ${name} port ${p['name']} -> a container port named ${p['targetPort']}`);
      t.equal(target?.['protocol'] ?? 'TCP', p['protocol'] ?? 'TCP', `${file}: Service ${name} port ${p['name']}: the same protocol`);
    }
  }
});

t.test('Kubernetes: env names are read by the program; $(VAR) refers to one defined before', async (t) => {
  for (const { file, o } of workloads) {
    for (const c of containersOf(o)) {
      const program = programOf(c['command']);
      const seen = new Set<string>();
      for (const e of c['env'] ?? []) {
        t.ok(envReadBy(program, e['name']), `${file}: ${program} reads ${e['name']}`);
        for (const m of String(e['value'] ?? '').matchAll(/\$\(([A-Z_][A-Z0-9_]*)\)/g)) t.ok(seen.has(m[1]!), `${file}: ${e['name']} uses $(${m[1]}), defined before it`);
        seen.add(e['name']);
      }
    }
  }
});

t.test("Kubernetes: each daemon replica's resume URL is its own name, through the StatefulSet's headless Service", async (t) => {
  const sts = workloads.find(({ o }) => o['kind'] === 'StatefulSet')!.o;
  const headless = objects.find(({ o }) => o['kind'] === 'Service' && o['metadata']['name'] === sts['spec']['serviceName'])?.o;
  t.ok(headless, `serviceName ${sts['spec']['serviceName']} is a Service of the manifests`);
  t.equal(headless?.['spec']['clusterIP'], 'None', 'and it is headless (a DNS name per pod)');
  t.equal(headless?.['spec']['publishNotReadyAddresses'], true, 'resolvable before the pod is ready again');
  const env: Obj[] = containersOf(sts)[0]!['env'];
  const url = env.find((e) => e['name'] === 'SPIWIRE_RESUME_URL')?.['value'];
  t.match(url, new RegExp(`^ws://\\$\\(POD_NAME\\)\\.${sts['spec']['serviceName']}\\.\\$\\(POD_NAMESPACE\\)\\.svc\\.`), `resume URL ${url}`);
  t.equal(env.find((e) => e['name'] === 'POD_NAME')?.['valueFrom']?.['fieldRef']?.['fieldPath'], 'metadata.name', 'POD_NAME from the downward API');
  const port = containersOf(sts)[0]!['ports'][0]['containerPort'];
  t.ok(String(url).includes(`:${port}/ws`), 'on the port the daemon listens on');
});

t.test('docker/stack.yml: services run programs the build has, with env names they read', async (t) => {
  const [stack] = load(join(ROOT, 'docker', 'stack.yml'));
  const services: Obj = stack!['services'];
  t.same(Object.keys(services).sort(), ['peers', 'rig', 'spiwire']);
  for (const [name, svc] of Object.entries(services) as Array<[string, Obj]>) {
    const args: string[] = [...(svc['entrypoint'] ?? []), ...(svc['command'] ?? [])].flatMap((a: string) => a.split(/\s+/));
    t.ok(programExists(args.map((a) => a.replace(/^["']|["';]+$/g, ''))), `${name} runs a program the build has`);
    const program = programOf(svc['command']);
    for (const env of Object.keys(svc['environment'] ?? {})) t.ok(envReadBy(program, env), `${name}: ${program} reads ${env}`);
    t.ok(stack!['networks'][svc['networks'][0]], `${name} is on a network the stack defines`);
  }
  const entry = services['spiwire']['entrypoint'].join(' ');
  t.ok(existsSync(join(ROOT, 'server/dist/src/tools/address-in.js')), 'the replica finds its own address with tools/address-in.js');
  t.match(entry, /SPIWIRE_RESUME_URL="ws:\/\/\$\$addr:7787\/ws"/, "each replica offers its own address as its resume URL ($$ is compose's literal $)");
});
