#!/usr/bin/env node
// Regenerates proto/schema.json from the method table (run after changing proto/src/messages.ts).
import { writeFileSync } from 'node:fs';
import { buildJsonSchema } from '@spiwire/proto';

const file = new URL('../proto/schema.json', import.meta.url);
writeFileSync(file, `${JSON.stringify(buildJsonSchema(), null, 2)}\n`);
console.log(`wrote ${file.pathname}`);
