#!/usr/bin/env node
// Read one bfx-bridge stream with nothing but node-redis (v5 or later) and @msgpack/msgpack.
// The same program as ../consumer.py, line for line; the rules are in docs/streams.md.
//
//   npm ci --prefix docs/examples/js
//   node docs/examples/js/consumer.mjs redis://127.0.0.1:6379/0 bfx:book:tBTCUSD:P0
//   node docs/examples/js/consumer.mjs redis://127.0.0.1:6379/0 bfx:trades:tBTCUSD --count 100
//
// A book stream (…:book:SYMBOL:P0…P4/R0) is kept as a book and its top is printed after every
// entry; a trades stream prints each trade; any other stream prints its records. The consumer
// starts at the stream's latest `snapshot` (so it has a full state at once) and then follows
// new entries with XREAD BLOCK:
//   reset    -> drop the state, wait for the next snapshot;
//   snapshot -> a new epoch, seq 0, replaces the state;
//   update   -> applies only with the current epoch and seq = previous + 1; anything else is
//               a gap, and the state is dropped until the next snapshot.
// One line per entry goes to stdout; notes go to stderr. --count N exits after N entries.

import { parseArgs } from 'node:util';
import { decode } from '@msgpack/msgpack';
import { createClient, RESP_TYPES } from 'redis';

const BLOCK_MS = 5000; // XREAD BLOCK timeout; the loop just reads again
const PAGE = 1000; // entries per XREVRANGE page when looking for the latest snapshot
const BOOK_PRECISIONS = new Set(['P0', 'P1', 'P2', 'P3', 'P4', 'R0']);

/** `book`, `trades` or `other`, from the stream key (PREFIX:book:SYMBOL:PREC…). */
function streamKind(key) {
  const parts = key.split(':');
  if (key.includes(':book:') && BOOK_PRECISIONS.has(parts[parts.length - 1])) return 'book';
  if (key.includes(':trades:')) return 'trades';
  return 'other';
}

/** A number as printed in every output line; `-` for none. */
const num = (value) => (value === null || value === undefined ? '-' : String(value));

/** The book of one epoch: every record by its identity, as docs/streams.md describes. */
class Book {
  constructor() {
    this.records = new Map();
  }

  /** Identity: order/offer id (R0), "rate:period" (funding P), price (P). */
  static key(rec) {
    if ('order_id' in rec) return rec.order_id;
    if ('offer_id' in rec) return rec.offer_id;
    if ('rate' in rec) return `${rec.rate}:${rec.period}`;
    return rec.price;
  }

  /** Add, replace or delete one record (P books: count 0; R0: price/rate 0 deletes). */
  apply(rec) {
    const raw = 'order_id' in rec || 'offer_id' in rec;
    const price = 'rate' in rec ? rec.rate : rec.price;
    if (raw ? price === 0 : rec.count === 0) this.records.delete(Book.key(rec));
    else this.records.set(Book.key(rec), rec);
  }

  /** [best price, total size at that price, records on the side]; bids: highest. */
  top(side) {
    const recs = [...this.records.values()].filter((r) => r.side === side);
    if (recs.length === 0) return [null, null, 0];
    const prices = recs.map((r) => ('rate' in r ? r.rate : r.price));
    const best = side === 'bid' ? Math.max(...prices) : Math.min(...prices);
    let size = 0;
    recs.forEach((r, i) => {
      if (prices[i] === best) size += Math.abs(r.amount);
    });
    return [best, size, recs.length];
  }

  line(epoch, seq) {
    const [bid, bidSize, bids] = this.top('bid');
    const [ask, askSize, asks] = this.top('ask');
    return (
      `book epoch=${epoch} seq=${seq} bid=${num(bid)} bid_size=${num(bidSize)} ` +
      `ask=${num(ask)} ask_size=${num(askSize)} bids=${bids} asks=${asks}`
    );
  }
}

/** One trade: trading trades have side and price, funding trades rate and period. */
function tradeLine(epoch, seq, t) {
  let out = `trade epoch=${epoch} seq=${seq} id=${t.id} mts=${t.mts}`;
  if ('event' in t) out += ` event=${t.event}`; // only with trades_tu = true: "te" or "tu"
  if ('side' in t) out += ` side=${t.side}`;
  out += ` amount=${num(t.amount)}`;
  if ('price' in t) out += ` price=${num(t.price)}`;
  else out += ` rate=${num(t.rate)} period=${t.period}`;
  return out;
}

/** The epoch/seq rules of docs/streams.md around one stream kind. */
class Consumer {
  constructor(kind) {
    this.kind = kind;
    this.epoch = null; // null: no state, waiting for a snapshot
    this.seq = 0;
    this.book = new Book();
  }

  /** One entry as read with Buffer values: {kind, epoch, seq, ts, mts?, data}. */
  handle(fields) {
    const kind = fields.kind.toString();
    const epoch = fields.epoch.toString();
    const seq = Number(fields.seq.toString());
    const data = decode(fields.data);
    if (kind === 'reset') {
      this.epoch = null;
      console.log(`reset epoch=${epoch || '-'} seq=${seq} reason=${JSON.stringify(data.reason)}`);
    } else if (kind === 'snapshot') {
      this.epoch = epoch;
      this.seq = seq;
      this.book = new Book();
      this.onSnapshot(epoch, seq, data);
    } else if (this.epoch === null) {
      console.log(`skip ${kind} epoch=${epoch} seq=${seq} (waiting for a snapshot)`);
    } else if (epoch !== this.epoch || seq !== this.seq + 1) {
      console.log(
        `gap epoch=${epoch} seq=${seq} expected_epoch=${this.epoch} ` +
          `expected_seq=${this.seq + 1} (state dropped, waiting for the next snapshot)`,
      );
      this.epoch = null;
    } else {
      this.seq = seq;
      this.onUpdate(epoch, seq, data);
    }
  }

  onSnapshot(epoch, seq, records) {
    if (this.kind === 'book') {
      for (const rec of records) this.book.apply(rec);
      console.log(this.book.line(epoch, seq));
    } else if (this.kind === 'trades') {
      // Bitfinex sends them newest first
      for (const trade of [...records].reverse()) console.log(tradeLine(epoch, seq, trade));
    } else {
      console.log(`snapshot epoch=${epoch} seq=${seq} data=${JSON.stringify(records)}`);
    }
  }

  onUpdate(epoch, seq, record) {
    if (this.kind === 'book') {
      this.book.apply(record);
      console.log(this.book.line(epoch, seq));
    } else if (this.kind === 'trades') {
      console.log(tradeLine(epoch, seq, record));
    } else {
      console.log(`update epoch=${epoch} seq=${seq} data=${JSON.stringify(record)}`);
    }
  }
}

/** Where to start: [id of the latest snapshot, its fields], or [newest id, null]. */
async function latestSnapshot(client, key) {
  let newest = '0-0';
  let end = '+';
  for (;;) {
    const rows = await client.xRevRange(key, end, '-', { COUNT: PAGE });
    if (rows.length === 0) return [newest, null];
    if (newest === '0-0') newest = rows[0].id.toString();
    for (const row of rows) {
      if (row.message.kind.toString() === 'snapshot') return [row.id.toString(), row.message];
    }
    end = `(${rows[rows.length - 1].id.toString()}`;
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { count: { type: 'string', default: '0' } },
  });
  if (positionals.length !== 2) {
    console.error('usage: consumer.mjs REDIS_URL STREAM [--count N]');
    return 2;
  }
  const [url, stream] = positionals;
  const count = Number(values.count);

  // `data` is binary msgpack: read every value as a Buffer, never as a UTF-8 string.
  const client = createClient({ url }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  client.on('error', (err) => console.error(`# redis: ${err.message}`));
  await client.connect();
  const consumer = new Consumer(streamKind(stream));
  let seen = 0;
  let [lastId, fields] = await latestSnapshot(client, stream);
  if (fields !== null) {
    consumer.handle(fields);
    seen += 1;
  } else {
    console.error(`# no snapshot in ${stream} yet: waiting for one`);
  }
  while (!count || seen < count) {
    const reply = await client.xRead([{ key: stream, id: lastId }], {
      BLOCK: BLOCK_MS,
      COUNT: 500,
    });
    for (const { messages } of reply ?? []) {
      for (const { id, message } of messages) {
        lastId = id.toString();
        consumer.handle(message);
        seen += 1;
        if (count && seen >= count) break;
      }
    }
  }
  await client.close();
  return 0;
}

process.on('SIGINT', () => process.exit(0));
process.exitCode = await main();
