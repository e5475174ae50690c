export * from './constants.js';
export * from './wsa-errors.js';
export * from './protocol-errors.js';
export * from './limits.js';
export * from './codec.js';
export * from './messages.js';
export * from './catalog.js';
export { buildJsonSchema } from './schema.js';
export * from './compact.js';
