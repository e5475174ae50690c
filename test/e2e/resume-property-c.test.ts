/**
 * More runs of the randomized resume property (resume-property.test.ts), in a file of their own
 * so that CI runs a few hundred (three files of 100, in parallel) within tap's per-file timeout.
 * fast-check draws a fresh seed in each file; a failure prints the seed to replay.
 */
await import('./resume-property.test.js');
