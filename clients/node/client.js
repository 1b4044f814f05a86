'use strict';
// A small Node.js client for the Messages Gateway: @grpc/grpc-js stubs made at run time by
// @grpc/proto-loader from the shipped descriptor set
// (clients/messages_gateway_client/generated/messages_gateway.binpb), plus what every consumer
// needs besides the stubs: the gateway key, deadlines, google.rpc error details decoded from the
// `grpc-status-details-bin` trailer, and streams that resume from the `resume-after` /
// `resume-before` trailer when they break after a page.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const descriptor = require('protobufjs/ext/descriptor');

/** The descriptor set `make protos` builds and ships (imports, source info, google.rpc). */
const DESCRIPTOR_SET = path.resolve(__dirname, '..', 'messages_gateway_client', 'generated',
  'messages_gateway.binpb');

/** proto-loader options: field names as in the proto (snake_case), enums as their names,
 * 64-bit integers as strings, unset fields with their defaults, and the oneof case named. */
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const TO_OBJECT = { longs: String, enums: String, defaults: false };

const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
const DETAILS_TRAILER = 'grpc-status-details-bin';
const RESUME_AFTER = 'resume-after';
const RESUME_BEFORE = 'resume-before';
const DETAIL_KEYS = {
  'google.rpc.ErrorInfo': 'errorInfo',
  'google.rpc.BadRequest': 'badRequest',
  'google.rpc.RetryInfo': 'retryInfo',
};

/** Loads the contract once: the service constructors and a protobufjs root for the details. */
function loadContract(descriptorSet = DESCRIPTOR_SET) {
  const bytes = fs.readFileSync(descriptorSet);
  const set = descriptor.FileDescriptorSet.decode(bytes);
  const root = restoreMaps(protobuf.Root.fromDescriptor(set), set);
  // proto-loader's own loadFileDescriptorSetFromBuffer has the same map limitation, so the
  // services are made from the repaired root, through its JSON form.
  const definition = protoLoader.fromJSON(root.toJSON(), LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(definition).messages_gateway.v1;
  return { pkg, root };
}

/**
 * protobufjs 7's descriptor import keeps a `map<K, V>` field as what the descriptor encodes, a
 * repeated `XxxEntry` message, so JavaScript callers would have to pass `[{key, value}]`; it
 * also marks the entry's *parent* map_entry instead of the entry. Turn each such field back into
 * a real map field, `{key: value}`, telling the entries by the descriptors' own flag.
 */
function restoreMaps(root, set) {
  const entries = new Set();
  const collect = (prefix, message) => {
    const name = `${prefix}.${message.name}`;
    if (message.options && message.options.mapEntry) entries.add(name);
    for (const nested of message.nestedType || []) collect(name, nested);
  };
  for (const file of set.file) {
    for (const message of file.messageType || []) collect(file.package ? `.${file.package}` : '', message);
  }
  const walk = (namespace) => {
    for (const nested of namespace.nestedArray.slice()) {
      if (nested instanceof protobuf.Type) {
        if (nested.options && !entries.has(nested.fullName)) delete nested.options.map_entry;
        for (const field of nested.fieldsArray.slice()) {
          if (!field.repeated || field instanceof protobuf.MapField) continue;
          const entry = field.resolve().resolvedType;
          if (!(entry instanceof protobuf.Type) || !entries.has(entry.fullName)) continue;
          nested.remove(field);
          nested.add(new protobuf.MapField(field.name, field.id, entry.fields.key.type,
            entry.fields.value.type, field.options));
          entry.parent.remove(entry);
        }
      }
      if (nested.nestedArray) walk(nested);
    }
  };
  walk(root);
  return root;
}

/** A failed call: the gRPC status plus what the gateway put in its details and trailers. */
class GatewayError extends Error {
  constructor(error, root) {
    super(error.details || error.message);
    this.name = 'GatewayError';
    this.code = error.code;
    this.codeName = STATUS_NAMES[error.code] || String(error.code);
    this.metadata = error.metadata || new grpc.Metadata();
    this.details = decodeDetails(this.metadata, root);
    const info = this.details.errorInfo || {};
    this.reason = info.reason || null;
    this.domain = info.domain || null;
    /** ErrorInfo's metadata: upstream_status, upstream_type, upstream_request_id, ... */
    this.info = info.metadata || {};
    this.requestId = this.info.upstream_request_id || null;
    const after = first(this.metadata, RESUME_AFTER);
    const before = first(this.metadata, RESUME_BEFORE);
    this.resume = after ? { after } : before ? { before } : null;
  }
}

function first(metadata, key) {
  const values = metadata.get(key);
  return values.length ? String(values[0]) : null;
}

/** google.rpc.Status from the trailer; each Any detail decoded by its type URL. */
function decodeDetails(metadata, root) {
  const out = { status: null, errorInfo: null, badRequest: null, retryInfo: null, other: [] };
  const raw = metadata.get(DETAILS_TRAILER);
  if (!raw.length) return out;
  const Status = root.lookupType('google.rpc.Status');
  const status = Status.decode(raw[0]);
  out.status = { code: status.code, message: status.message };
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    let type;
    try {
      type = root.lookupType(typeName);
    } catch {
      out.other.push({ type_url: any.type_url });
      continue;
    }
    const value = type.toObject(type.decode(any.value), TO_OBJECT);
    const key = DETAIL_KEYS[typeName];
    if (key) out[key] = value;
    else out.other.push({ type_url: any.type_url, value });
  }
  return out;
}

/**
 * One connection to the gateway. `apiKey` is sent as `authorization: Bearer <key>` on every
 * call (gateways with auth off ignore it); `timeoutMs` is each call's deadline.
 */
class MessagesGatewayClient {
  constructor(target, { apiKey = null, timeoutMs = 10000, contract = loadContract(),
    credentials = grpc.credentials.createInsecure() } = {}) {
    this.apiKey = apiKey;
    this.timeoutMs = timeoutMs;
    this.root = contract.root;
    this.messages = new contract.pkg.MessagesService(target, credentials);
    this.threads = new contract.pkg.ThreadsService(target, credentials, {
      channelOverride: this.messages.getChannel(),
    });
  }

  close() {
    this.messages.close();
  }

  /** A copy of this client sending another key (or none) over the same channel. */
  withKey(apiKey) {
    const copy = Object.create(MessagesGatewayClient.prototype);
    return Object.assign(copy, this, { apiKey });
  }

  metadata() {
    const metadata = new grpc.Metadata();
    if (this.apiKey) metadata.set('authorization', `Bearer ${this.apiKey}`);
    return metadata;
  }

  options() {
    return { deadline: Date.now() + this.timeoutMs };
  }

  /** A unary call, e.g. `unary('messages', 'GetMessage', {thread_id, message_id})`. */
  unary(service, method, request) {
    return new Promise((resolve, reject) => {
      this[service][method](request, this.metadata(), this.options(), (error, response) => {
        if (error) reject(new GatewayError(error, this.root));
        else resolve(response);
      });
    });
  }

  createThread(request) { return this.unary('threads', 'CreateThread', request); }
  getThread(request) { return this.unary('threads', 'GetThread', request); }
  deleteThread(request) { return this.unary('threads', 'DeleteThread', request); }
  createMessage(request) { return this.unary('messages', 'CreateMessage', request); }
  getMessage(request) { return this.unary('messages', 'GetMessage', request); }
  updateMessage(request) { return this.unary('messages', 'UpdateMessage', request); }
  listMessages(request) { return this.unary('messages', 'ListMessages', request); }
  getMessageFile(request) { return this.unary('messages', 'GetMessageFile', request); }
  listMessageFiles(request) { return this.unary('messages', 'ListMessageFiles', request); }

  /** StreamMessages as a resumable async iterable of pages (see ResumableStream). */
  streamMessages(request, options) {
    return new ResumableStream(this, 'StreamMessages', request, options);
  }

  streamMessageFiles(request, options) {
    return new ResumableStream(this, 'StreamMessageFiles', request, options);
  }
}

/**
 * The pages of a StreamMessages / StreamMessageFiles call. When the stream breaks with
 * UNAVAILABLE after at least one page, the call is made again from the cursor the gateway sent
 * in the `resume-after` (forward walks) or `resume-before` (backward walks) trailer, with
 * `max_items` reduced by what was received: nothing is lost or repeated. `page_index` keeps
 * counting across resumes; `resumes` counts them. Other errors, or a break before any page,
 * are thrown as GatewayError.
 */
class ResumableStream {
  constructor(client, method, request, { maxResumes = 3, onResume = null } = {}) {
    this.client = client;
    this.method = method;
    this.request = { ...request };
    this.maxResumes = maxResumes;
    this.onResume = onResume;
    this.resumes = 0;
  }

  async *[Symbol.asyncIterator]() {
    let request = { ...this.request };
    let received = 0;
    let index = 0;
    for (;;) {
      const call = this.client.messages[this.method](
        request, this.client.metadata(), this.client.options());
      try {
        for await (const page of call) {
          received += page.data.length;
          yield { ...page, page_index: index++ };
        }
        return;
      } catch (raw) {
        const error = raw instanceof GatewayError ? raw : new GatewayError(raw, this.client.root);
        if (error.code !== grpc.status.UNAVAILABLE || index === 0 || !error.resume
          || this.resumes >= this.maxResumes) {
          throw error;
        }
        if (this.request.max_items && received >= this.request.max_items) return;  // all there:
        // a resume with max_items 0 would mean "no cap" and deliver the rest of the thread
        this.resumes += 1;
        if (this.onResume) this.onResume(error);
        request = { ...request, ...error.resume };
        if (this.request.max_items) request.max_items = this.request.max_items - received;
      }
    }
  }
}

module.exports = {
  DESCRIPTOR_SET, GatewayError, MessagesGatewayClient, ResumableStream, decodeDetails,
  loadContract, status: grpc.status,
};
