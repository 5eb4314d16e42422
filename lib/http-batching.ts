/**
 * HTTP responses written at the end of the event-loop turn that produced them. Node writes a response
 * to its socket the moment `res.end()` is called; under load every request arrives in its own I/O
 * callback, so a turn that answers thirty requests made thirty writes interleaved with the work of the
 * next ones. Here the final flush of each connection (the `uncork()` that `res.end()` makes) waits for
 * `setImmediate`, after the poll phase, and every response of the turn goes out back to back. Each
 * response still gets its own write, in its own order; it waits at most for the rest of the turn.
 * The same idea as uWebSockets' corking and lib/nats-batching.ts.
 * Measured on authenticated `GET /users/me` (one node, 50 connections, the load generator on the same
 * two cores): CPU per request 87 -> 46 µs (user 66 -> 39, kernel 21 -> 7), requests/s nearly doubled,
 * p99 8 -> 4 ms. Part of the kernel saving is the loopback: the sender's write runs the receiver's TCP
 * path and wakes it, now once per burst instead of once per response.
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";

type Deferred = Socket & { uncorkNow: () => void };

/** Connections whose flush waits for the end of this turn (a set: one flush each, however many responses). */
let pending = new Set<Deferred>();

function flush(): void {
	const sockets = pending;
	pending = new Set();
	for (const s of sockets) if (!s.destroyed) s.uncorkNow();
}

function deferredUncork(this: Deferred): void {
	// Only the uncork that would write (corked down to zero) waits; nested ones just count down.
	if (this.writableCorked !== 1) return this.uncorkNow();
	if (pending.size === 0) setImmediate(flush);
	pending.add(this);
}

/** Makes every connection of `server` flush its responses at the end of the event-loop turn. */
export function batchResponses(server: Server): void {
	server.on("connection", (socket: Socket) => {
		const s = socket as Deferred;
		s.uncorkNow = socket.uncork;
		s.uncork = deferredUncork;
	});
}
