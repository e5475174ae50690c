#!/usr/bin/env -S node --single-threaded-gc --no-incremental-marking
// The `spiwire` command (npx spiwire, or node_modules/.bin/spiwire). A committed file of its own:
// npm links a package's commands when it installs, before `tsc -b` has built dist/, and it links
// no command whose file is missing then.
try {
  await import('../dist/src/main.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/src/main.js')) throw err;
  process.stderr.write('spiwire: the daemon is not built yet: run `npm run build` (or `npx tsc -b`) in the repository first\n');
  process.exit(2);
}
