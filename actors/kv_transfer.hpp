// kv_transfer: disaggregated prefill and decode (llm_config.is_disaggregated with
// b10_disagg_config), the roles, the hand-off of a request's KV blocks from a prefill worker to
// a decode worker, and its limits. The messages live in protocol.hpp; the two sides of the
// protocol are in worker.cpp, the choice of the pair in router.cpp.
//
// Roles and units
//   A disaggregated deployment starts replication units of prefill_workers_per_replica
//   prefill workers and decode_workers_per_replica decode workers (worker_spec::role, ::unit;
//   `troupe serve` starts --workers units, `troupe node --role worker --worker-role R` starts
//   workers of role R). An aggregated worker has role "aggregated". /v1/actors and
//   `troupe actors` show each worker's role and unit.
//
// The flow (one request)
//   1. The router picks a prefill worker P (its routing policy over the prefill workers: the
//      cached prefix by the KV index, then load) and a decode worker D (the same policy over the
//      decode workers: what D caches of the prompt, and its load). It counts the request on
//      both until the hand-off (P: the prompt; D: prompt + max_tokens).
//   2. P runs the prompt and samples the first token; the token goes to the client at once
//      (time to first token is P's). A request that ends at its first token (max_tokens 1, an
//      end token, a stop string) ends on P and nothing crosses; so do embedding requests and
//      constrained (structured output) ones, which P serves whole.
//   3. P exports the request's blocks, holds the request (its blocks stay pinned, it is no
//      longer scheduled) and sends D a kv_handoff: prompt, sampling, the token(s) sampled, how
//      many tokens the blocks hold, P's kv_layout and bytes per block.
//   4. D begin_import()s: blocks its prefix cache already holds (by block hash, e.g. a shared
//      system prompt) are pinned locally and not asked for (counted as skipped); the rest are
//      allocated. D answers kvpull(first block it needs), or kvabort(reason) (no room, layouts
//      differ).
//   5. P sends the needed blocks as kv_chunks of at most kChunkBytes (whole blocks; a block
//      larger than that travels alone), reading them from its executor between its own steps.
//      Credits: P keeps at most kTransferCreditBytes un-acknowledged per transfer and at most
//      kNodeCreditBytes over all transfers leaving its process (a node), so a long prompt
//      never floods a connection and control traffic keeps flowing between chunks. D writes
//      each chunk into its executor between its steps and acknowledges its bytes (kvack),
//      which returns the credit.
//   6. With every block written D end_import()s, tells P kvdone and the router handoff, and
//      decodes on, streaming the rest of the tokens to the same stream actor. P then aborts
//      its held copy: its blocks go back to its pool (into its prefix cache).
//   In one process the messages are local and not serialised (the chunk's byte vector is
//   moved, not copied); across nodes CAF serialises them. The code is the same.
//
// Faults (in every case both pools end with no block leaked)
//   - P dies before its first token: the router retries the request on another prefill
//     worker (nothing was streamed). P dies after it (during the transfer): the router ends the
//     request with a clear error (503); D sees P go down and drops the import.
//   - D dies before the hand-off: nothing from D was streamed, but P's first token may have
//     been: the router retries if nothing was streamed, else ends it with a clear error; P sees
//     D go down and drops its held copy. D dies after the hand-off: the router's error.
//   - A transfer without progress for the stall timeout (TROUPE_KV_TRANSFER_TIMEOUT_S, default
//     30 s) is aborted on both sides: P ends the request with a 503 and frees its copy, and
//     sends kvabort; D drops the import (and does the same when its own side stalls).
//   - The client goes away, or the router aborts: each side drops its part and tells the
//     other (kvabort).
//
// The GPU path (designed, not built; the CUDA executor's read_blocks/write_blocks stage
// through host memory today, so the protocol above works with CUDA workers as it is):
//   - One node: P and D hold their KV caches on devices of one host. D's kvpull carries the
//     block ids it allocated; P issues cudaMemcpyPeerAsync from its cache to D's (a device-to-
//     device copy over NVLink/PCIe, on a stream of its own, ordered after P's last forward by
//     an event) per chunk, and sends a kv_chunk with no bytes and the copy's completion; D
//     makes its next forward wait on that event. No host copy, no serialisation.
//   - Across nodes: the same chunks, as NCCL send/recv between the two ranks of a
//     communicator the node agents set up per (P, D) pair on first use (the actors/cuda_stream
//     NCCL bootstrap): P ncclSend()s the blocks of a chunk, D ncclRecv()s straight into its
//     allocated blocks; the CAF messages carry only the chunk's header and the credits.
//   Both sit behind executor::read_blocks/write_blocks's callers in worker.cpp: a device that
//   can move blocks itself answers kv_chunk with the bytes left empty.
//
// What this owns: the protocol's constants and the per-process credit counter. What it does
// not: choosing the pair (router), the blocks (engine), the bytes' layout (executor).
#pragma once

#include <cstdint>
#include <string>

namespace troupe::kv_transfer {

inline constexpr const char* kAggregated = "aggregated";
inline constexpr const char* kPrefill = "prefill";
inline constexpr const char* kDecode = "decode";

// Limits; each can be lowered by the environment for tests (TROUPE_KV_CHUNK_BYTES,
// TROUPE_KV_TRANSFER_CREDIT_BYTES, TROUPE_KV_NODE_CREDIT_BYTES).
inline constexpr uint64_t kChunkBytes = 1u << 20;           // per kv_chunk message
inline constexpr uint64_t kTransferCreditBytes = 4u << 20;  // un-acknowledged, per transfer
inline constexpr uint64_t kNodeCreditBytes = 16u << 20;     // un-acknowledged, per process
inline constexpr double kStallTimeoutS = 30;

uint64_t chunk_bytes();
uint64_t transfer_credit_bytes();
uint64_t node_credit_bytes();
double stall_timeout_s();

// The process's credit: bytes sent and not yet acknowledged, over every transfer leaving it.
// try_acquire takes n if that stays within node_credit_bytes() (or nothing is in flight: a
// chunk larger than the whole credit still moves, alone); release gives it back.
bool try_acquire_node_credit(uint64_t n);
void release_node_credit(uint64_t n);
uint64_t node_bytes_in_flight();

// Whether role is one of the three names.
bool valid_role(const std::string& role);

}  // namespace troupe::kv_transfer
