/**
 * Builds the machine-readable JSON Schema (draft 2020-12) of the protocol from the method table.
 * proto/schema.json is this function's output; a test keeps the file and the table in step.
 */
import { METHODS, NETWORK_EVENT_NAMES, NOTIFICATIONS, WELCOME_LIMITS_OPTIONAL, WELCOME_LIMITS_REQUIRED, type FieldSpec, type FieldType, type MethodSpec } from './messages.js';
import { SUBPROTOCOL, PROTOCOL_VERSION, MAX_FAULT_MS, MAX_FAULT_NAME, MAX_FAULT_WINDOW_MS } from './limits.js';
import { FAULT_ACTION_TYPES, FAULT_BREAK_CODES, FAULT_FUNCTIONS } from './faults.js';
import { PROTOCOL_ERRORS } from './protocol-errors.js';

type Schema = Record<string, unknown>;

const U32 = { type: 'integer', minimum: 0, maximum: 4294967295 } as const;

/** Standard base64 (RFC 4648 section 4), padded to a multiple of 4 characters, nothing else. */
export const BASE64_PATTERN = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';
const faultName = { type: 'string', minLength: 1, maxLength: MAX_FAULT_NAME, pattern: '^[A-Za-z0-9._:-]+$' };
const addressFilter: Schema = {
  type: 'object',
  properties: { address: { type: 'string', minLength: 1, maxLength: 64 }, port: { type: 'integer', minimum: 0, maximum: 65535 } },
  minProperties: 1,
  additionalProperties: false,
};
const faultRuleProperties: Record<string, Schema> = {
  id: { ...faultName, description: 'The rule id; the daemon chooses one when absent.' },
  match: {
    type: 'object',
    description: 'Which calls the rule applies to; every member given must hold.',
    properties: {
      socket: { ...U32, description: 'A socket handle.' },
      tag: { ...faultName, description: 'A socket tag (spiwire.setSocketTag).' },
      local: addressFilter,
      remote: addressFilter,
      functions: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...FAULT_FUNCTIONS] }, description: 'Default: WSPSend and WSPSendTo.' },
      nth: { type: 'integer', minimum: 1, maximum: 4294967295, description: 'The n-th matching call on the socket (not with every).' },
      every: { type: 'integer', minimum: 1, maximum: 4294967295, description: 'Every k-th matching call on the socket (not with nth).' },
      afterBytes: { type: 'integer', minimum: 0, maximum: 9007199254740991, description: 'Once the transport has taken this many bytes of sends on the socket.' },
      probability: { type: 'number', minimum: 0, maximum: 1, description: 'Chance drawn from the rule\'s seeded generator.' },
      window: {
        type: 'object',
        description: 'Only from startMs to endMs after the rule was added (endMs later than startMs).',
        properties: { startMs: { type: 'integer', minimum: 0, maximum: MAX_FAULT_WINDOW_MS }, endMs: { type: 'integer', minimum: 0, maximum: MAX_FAULT_WINDOW_MS } },
        minProperties: 1,
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
  action: {
    description: `One of ${FAULT_ACTION_TYPES.join(', ')}; error codes are limited per function (proto/README.md section 19).`,
    oneOf: [
      { type: 'object', properties: { type: { const: 'block' }, ms: { type: 'integer', minimum: 1, maximum: MAX_FAULT_MS } }, required: ['type', 'ms'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'block' }, drained: { type: 'integer', minimum: 1, maximum: 4294967295 } }, required: ['type', 'drained'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'short' }, max: { type: 'integer', minimum: 1, maximum: 4294967295 } }, required: ['type', 'max'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'delay' }, ms: { type: 'integer', minimum: 1, maximum: MAX_FAULT_MS } }, required: ['type', 'ms'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'error' }, code: U32 }, required: ['type', 'code'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'reorder' }, windowMs: { type: 'integer', minimum: 1, maximum: MAX_FAULT_MS } }, required: ['type', 'windowMs'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'break' }, at: { type: 'integer', minimum: 0, maximum: 9007199254740991 }, code: { enum: [...FAULT_BREAK_CODES] } }, required: ['type', 'at', 'code'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'link' }, bytesPerSecond: { type: 'integer', minimum: 1, maximum: 4294967295 }, latencyMs: { type: 'integer', minimum: 0, maximum: MAX_FAULT_MS } }, required: ['type', 'bytesPerSecond'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'drop' } }, required: ['type'], additionalProperties: false },
      { type: 'object', properties: { type: { const: 'duplicate' } }, required: ['type'], additionalProperties: false },
    ],
  },
  times: { type: 'integer', minimum: 1, maximum: 4294967295, description: 'How many times the rule fires at most; no limit when absent.' },
  seed: { ...U32, description: 'Seed of the rule\'s generator; 1 when absent.' },
  notify: { type: 'boolean', description: 'Send spiwire.faultApplied each time the rule fires.' },
};

const defs: Record<string, Schema> = {
  bytes: {
    description:
      'A byte string: {"$b":[offset,length]} into the record data (binary frames; offset and length are u32, offset + length at most the record\'s dataLength, itself at most maxFrameBytes) or {"$base64":"..."} (text frames).',
    oneOf: [
      {
        type: 'object',
        properties: { $b: { type: 'array', prefixItems: [{ ...U32, description: 'offset' }, { ...U32, description: 'length' }], items: false, minItems: 2, maxItems: 2 } },
        required: ['$b'],
        additionalProperties: false,
      },
      { type: 'object', properties: { $base64: { type: 'string', pattern: BASE64_PATTERN } }, required: ['$base64'], additionalProperties: false },
    ],
  },
  sockaddr: {
    type: 'object',
    properties: {
      family: {
        type: 'integer',
        minimum: 0,
        maximum: 65535,
        description: 'AF_INET 2 or AF_INET6 23; AF_UNSPEC 0 only in WSPConnect on a datagram socket (it dissolves the default peer). Other values pass validation and give WSAEAFNOSUPPORT.',
      },
      address: { type: 'string', maxLength: 64, description: 'Numeric address: dotted IPv4 or IPv6 text' },
      port: { type: 'integer', minimum: 0, maximum: 65535 },
      flowinfo: { type: 'integer', minimum: 0, maximum: 4294967295 },
      scopeId: { type: 'integer', minimum: 0, maximum: 4294967295 },
    },
    required: ['family', 'address', 'port'],
    additionalProperties: false,
  },
  overlapped: {
    type: 'object',
    properties: { op: { type: 'integer', minimum: 0, maximum: 4294967295 }, thread: { type: 'integer', minimum: 0, maximum: 4294967295 } },
    required: ['op', 'thread'],
    additionalProperties: false,
  },
  resumeOffer: {
    type: 'object',
    description: 'spiwire.welcome\'s resume: how to resume the session after its connection drops (proto/README.md section 20).',
    properties: {
      token: { type: 'string', description: 'The secret a resume presents; replaced at each resume (spiwire.resumed).' },
      graceMs: { type: 'integer', minimum: 1, maximum: 9007199254740991, description: 'How long the daemon keeps the session after its connection dropped, in ms.' },
      daemonId: { type: 'string', description: 'This daemon\'s id, named in the resume URL and in spiwire.resume.' },
      url: { type: 'string', description: 'Where to reconnect for a resume when it is not the URL first used (the operator\'s --resume-url).' },
    },
    required: ['token', 'graceMs', 'daemonId'],
  },
  limits: {
    type: 'object',
    description: 'The limits in force (proto/README.md section 6). Daemons add members within version 1; a client ignores those it does not know.',
    properties: Object.fromEntries(
      [...WELCOME_LIMITS_REQUIRED, ...WELCOME_LIMITS_OPTIONAL].map((k) => [k, { type: 'integer', minimum: 0, maximum: 9007199254740991 }]),
    ),
    required: [...WELCOME_LIMITS_REQUIRED],
  },
  errorObject: {
    type: 'object',
    description: 'The error of a JSON-RPC error response (proto/README.md section 13). message is for people; data is present for some codes.',
    properties: {
      code: { enum: PROTOCOL_ERRORS.map((e) => e.code), description: PROTOCOL_ERRORS.map((e) => `${e.name} ${e.code}`).join(', ') },
      message: { type: 'string' },
      data: { type: 'object', description: 'INVALID_PARAMS: {"field": "<path>"}; DUPLICATE_ID: {"id": <the id in use>}; RESUME_REFUSED: {"reason": "<reason>", "daemonId": "<this daemon>"}; and in every error with "id": null that answers one record of a binary frame, "record": <its index in the frame, from 0>.' },
    },
    required: ['code', 'message'],
    additionalProperties: false,
  },
  timeval: {
    type: 'object',
    description: 'A struct timeval: seconds and microseconds, each a C long.',
    properties: {
      sec: { type: 'integer', minimum: -2147483648, maximum: 2147483647 },
      usec: { type: 'integer', minimum: -2147483648, maximum: 2147483647 },
    },
    required: ['sec', 'usec'],
    additionalProperties: false,
  },
  eventErrors: {
    type: 'object',
    description: 'iErrorCode of each recorded event that has one, by FD_* name.',
    properties: Object.fromEntries(NETWORK_EVENT_NAMES.map((k) => [k, { type: 'integer', minimum: 0, maximum: 4294967295 }])),
    additionalProperties: false,
  },
  faultRule: {
    type: 'object',
    description: 'A fault rule (proto/README.md section 19).',
    properties: faultRuleProperties,
    required: ['match', 'action'],
    additionalProperties: false,
  },
  faultRuleStatus: {
    type: 'object',
    description: 'A fault rule as spiwire.faults.list reports it.',
    properties: { ...faultRuleProperties, hits: { type: 'integer', minimum: 0, description: 'How many times the rule fired.' } },
    required: ['id', 'match', 'action', 'seed', 'hits'],
    additionalProperties: false,
  },
  completion: {
    type: 'object',
    properties: {
      error: { type: 'integer', minimum: 0, maximum: 4294967295, description: 'The WSA code (0 on success).' },
      bytes: { type: 'integer', minimum: 0, maximum: 4294967295, description: 'cbTransferred.' },
      flags: { type: 'integer', minimum: 0, maximum: 4294967295, description: 'dwFlags of the completion.' },
    },
    required: ['error', 'bytes', 'flags'],
    additionalProperties: false,
  },
};

function typeSchema(t: FieldType): Schema {
  switch (t) {
    case 'handle':
    case 'u32':
      return { type: 'integer', minimum: 0, maximum: 4294967295 };
    case 'int':
      return { type: 'integer', minimum: -2147483648, maximum: 2147483647 };
    case 'bool':
      return { type: 'boolean' };
    case 'string':
      return { type: 'string' };
    case 'bytes':
      return { $ref: '#/$defs/bytes' };
    case 'bytes[]':
      return { type: 'array', maxItems: 1024, items: { $ref: '#/$defs/bytes' } };
    case 'u32[]':
      return { type: 'array', maxItems: 1024, items: { type: 'integer', minimum: 0, maximum: 4294967295 } };
    case 'timeval':
      return { $ref: '#/$defs/timeval' };
    case 'sockaddr':
      return { $ref: '#/$defs/sockaddr' };
    case 'overlapped':
      return { $ref: '#/$defs/overlapped' };
    case 'completion':
      return { $ref: '#/$defs/completion' };
    case 'limits':
      return { $ref: '#/$defs/limits' };
    case 'eventErrors':
      return { $ref: '#/$defs/eventErrors' };
    case 'faultRule':
      return { $ref: '#/$defs/faultRule' };
    case 'faultRules':
      return { type: 'array', maxItems: 64, items: { $ref: '#/$defs/faultRuleStatus' } };
    case 'resumeOffer':
      return { $ref: '#/$defs/resumeOffer' };
    case 'requestId':
      return { type: ['integer', 'string'] };
  }
}

function fieldSchema(f: FieldSpec): Schema {
  const base = typeSchema(f.type);
  const withDoc = { ...base, description: f.doc };
  return f.nullable ? { description: f.doc, oneOf: [base, { type: 'null' }] } : withDoc;
}

function objectSchema(fields: Readonly<Record<string, FieldSpec>>, extra: Record<string, Schema> = {}, extraRequired: string[] = []): Schema {
  const properties: Record<string, Schema> = { ...extra };
  const required = [...extraRequired];
  for (const [k, f] of Object.entries(fields)) {
    properties[k] = fieldSchema(f);
    if (!f.optional) required.push(k);
  }
  return { type: 'object', properties, required, additionalProperties: false };
}

export function buildJsonSchema(): Schema {
  const methods: Record<string, Schema> = {};
  for (const [name, m] of Object.entries(METHODS) as Array<[string, MethodSpec]>) {
    if (m.noResult) {
      // Nothing validates: no result is ever sent for it (a notification or an error answers it).
      const never = { not: {}, description: 'Never sent: the daemon answers this call with a notification or an error response, never a result.' };
      methods[name] = { description: m.summary, params: objectSchema(m.params), result: never, response: never };
      continue;
    }
    methods[name] = {
      description: m.summary,
      params: objectSchema(m.params),
      result: objectSchema(m.result, { ret: { type: 'integer', description: 'The C return value: 0, SOCKET_ERROR (-1), a SOCKET, or INVALID_SOCKET (-1).' }, errno: { ...U32, description: 'The WSA code written to lpErrno; 0 on success.' } }, ['ret', 'errno']),
      // The whole reply as a client receives it (an error response is #/errorResponse).
      response: {
        type: 'object',
        properties: { jsonrpc: { const: '2.0' }, id: { anyOf: [{ type: 'integer' }, { type: 'string' }] }, result: { $ref: `#/methods/${name}/result` } },
        required: ['jsonrpc', 'id', 'result'],
        additionalProperties: false,
      },
    };
  }
  const notifications: Record<string, Schema> = {};
  for (const [name, n] of Object.entries(NOTIFICATIONS)) {
    notifications[name] = {
      description: n.summary,
      params: objectSchema(n.params),
      // The whole message as a client receives it, for validating it in one step.
      message: {
        type: 'object',
        properties: { jsonrpc: { const: '2.0' }, method: { const: name }, params: { $ref: `#/notifications/${name}/params` } },
        required: ['jsonrpc', 'method', 'params'],
        additionalProperties: false,
      },
    };
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:spiwire:protocol:v1',
    title: 'spiwire wire protocol',
    description: `JSON-RPC 2.0 over WebSocket subprotocol "${SUBPROTOCOL}" (protocol version ${PROTOCOL_VERSION}). See proto/README.md for framing. "methods" maps each method to its params and result schemas; "notifications" maps each notification to its params and to its whole message; "errorResponse" is a JSON-RPC error response. Refer to a part with a JSON pointer from this document's $id, for example urn:spiwire:protocol:v1#/notifications/spiwire.completion/message.`,
    $defs: defs,
    methods,
    notifications,
    errorResponse: {
      type: 'object',
      properties: { jsonrpc: { const: '2.0' }, id: { anyOf: [{ type: 'integer' }, { type: 'string' }, { type: 'null' }] }, error: { $ref: '#/$defs/errorObject' } },
      required: ['jsonrpc', 'id', 'error'],
      additionalProperties: false,
    },
  };
}
