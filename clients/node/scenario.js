#!/usr/bin/env node
'use strict';
// The consumer scenario the test suite runs against a real gateway and emulator
// (tests/clients/test_node_consumer.py): every step prints one JSON line, `{"step": ...}`.
//
//   GATEWAY_TARGET=127.0.0.1:50051 GATEWAY_KEY=mgw_... GATEWAY_BAD_KEY=mgw_nope node scenario.js
//
// The stream step prints each page as it arrives; the test breaks the stream after the first
// page (an emulator fault) and this side resumes from the `resume-after` trailer.

const { GatewayError, MessagesGatewayClient } = require('./client');

function emit(step, fields = {}) {
  process.stdout.write(`${JSON.stringify({ step, ...fields })}\n`);
}

function text(message) {
  const part = message.content.find((p) => p.part === 'text');
  return part ? part.text.value : null;
}

async function failure(step, promise) {
  try {
    await promise;
    emit(step, { code_name: 'OK' });
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    emit(step, {
      code: error.code,
      code_name: error.codeName,
      message: error.message,
      reason: error.reason,
      domain: error.domain,
      request_id: error.requestId,
      upstream_status: error.info.upstream_status || null,
      violations: error.details.badRequest ? error.details.badRequest.field_violations : [],
    });
  }
}

async function main() {
  const client = new MessagesGatewayClient(process.env.GATEWAY_TARGET, {
    apiKey: process.env.GATEWAY_KEY || null,
    timeoutMs: 15000,
  });
  try {
    const thread = await client.createThread({
      messages: Array.from({ length: 7 }, (_, i) => ({ role: 'ROLE_USER', content: `m${i}` })),
      metadata: { entries: { team: 'node' } },
    });
    emit('create_thread', { id: thread.id, object: thread.object, metadata: thread.metadata.entries });
    const threadId = thread.id;

    const created = await client.createMessage({
      thread_id: threadId, role: 'ROLE_USER', content: 'hello from node',
      file_ids: ['file-node-1', 'file-node-2'], metadata: { entries: { source: 'node' } },
    });
    emit('create_message', {
      id: created.id, role: created.role, text: text(created), file_ids: created.file_ids,
      metadata: created.metadata.entries, created_at: created.created_at,
    });

    const got = await client.getMessage({ thread_id: threadId, message_id: created.id });
    emit('get_message', { id: got.id, role: got.role, text: text(got), thread_id: got.thread_id });

    const updated = await client.updateMessage({
      thread_id: threadId, message_id: created.id, metadata: { entries: { reviewed: 'yes' } },
    });
    emit('update_message', { id: updated.id, metadata: updated.metadata.entries });

    const page = await client.listMessages({ thread_id: threadId, limit: 3, order: 'ORDER_ASC' });
    emit('list_messages', {
      ids: page.data.map((m) => m.id), has_more: page.has_more,
      first_id: page.first_id, last_id: page.last_id,
    });

    const stream = client.streamMessages({ thread_id: threadId, limit: 2, order: 'ORDER_ASC' }, {
      onResume: (error) => emit('stream_broken', {
        code_name: error.codeName, reason: error.reason, resume: error.resume,
      }),
    });
    const streamed = [];
    for await (const p of stream) {
      const ids = p.data.map((m) => m.id);
      streamed.push(...ids);
      emit('stream_page', { page_index: p.page_index, ids, resume_after: p.resume_after });
    }
    emit('stream_done', { ids: streamed, resumes: stream.resumes });

    const file = await client.getMessageFile({
      thread_id: threadId, message_id: created.id, file_id: 'file-node-1',
    });
    emit('get_message_file', { id: file.id, object: file.object, message_id: file.message_id });
    const files = await client.listMessageFiles({
      thread_id: threadId, message_id: created.id, order: 'ORDER_ASC',
    });
    emit('list_message_files', { ids: files.data.map((f) => f.id), has_more: files.has_more });

    await failure('bad_key', client.withKey(process.env.GATEWAY_BAD_KEY).getThread({ thread_id: threadId }));
    await failure('no_key', client.withKey(null).getThread({ thread_id: threadId }));
    await failure('bad_request', client.createMessage({ thread_id: threadId, role: 'ROLE_UNSPECIFIED', content: '' }));
    await failure('not_found', client.getMessage({ thread_id: threadId, message_id: 'msg_missing' }));
    emit('done');
  } finally {
    client.close();
  }
}

main().catch((error) => {
  emit('fatal', { message: String(error && error.stack ? error.stack : error) });
  process.exitCode = 1;
});
