// The inference engine: continuous batching over a paged KV cache.
//
// Each step() the scheduler builds one batch under a token budget: first the running
// sequences (decode: one token each; a prefill in progress: its next chunk), oldest first, then
// waiting requests in arrival order while the budget, the sequence limit and free KV blocks
// allow. When a running sequence needs a block and none is free, the newest running sequence
// is preempted: its blocks are freed and it goes back to the front of the queue, to be
// re-prefilled over its prompt and the tokens it already generated (recompute). Because kernels
// are batch-invariant and sampling depends only on (seed, step), preemption and batching never
// change a sequence's tokens.
//
// Threads: an Engine is driven by one thread (add_request, cancel and step on that thread).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/engine/kv_block_allocator.h"
#include "agent/engine/model.h"
#include "agent/engine/sampler.h"
#include "agent/engine/text_stream.h"
#include "common/status.h"

namespace hotswap::engine {

enum class FinishReason { kNone, kStop, kLength, kAbort };
const char* finish_reason_name(FinishReason r);  // "", "stop", "length", "abort"

struct StopConditions {
  int max_tokens = 16;                  // generated tokens, >= 1
  std::vector<std::string> stop;        // stop strings; the text ends before the first match
  std::vector<int32_t> stop_token_ids;  // besides EOS
  bool ignore_eos = false;
};

struct GenerationRequest {
  std::string id;
  std::vector<int32_t> prompt;
  SamplingParams sampling;       // sampling.seed is replaced by `seed` or a random one
  std::optional<uint64_t> seed;
  StopConditions stop;
};

// What one step produced for one request.
struct TokenEvent {
  std::string request_id;
  int32_t token = -1;       // the new token; -1 on an event that only finishes (abort)
  int64_t index = -1;       // its index among the generated tokens
  std::string text;         // text newly safe to show
  FinishReason finish = FinishReason::kNone;
};

// Where the forward pass runs: the CPU kernels, or the CUDA ones (cuda_backend.h).
enum class Device { kCpu, kCuda };
const char* device_name(Device d);
// "cpu", "cuda", or "auto" (cuda when this agent has the CUDA backend and sees a GPU, else cpu).
// "cuda" does not look for a GPU here: Engine::create says when there is none.
StatusOr<Device> resolve_device(const std::string& name);

struct EngineOptions {
  Device device = Device::kCpu;
  int gpu = 0;                    // the CUDA device ordinal, with Device::kCuda
  int threads = 0;                // 0: all cores (the CPU backend)
  int64_t kv_cache_bytes = 256ll << 20;
  int64_t kv_blocks = 0;          // overrides kv_cache_bytes when > 0
  int block_size = 16;
  // The KV cache's element type. f32 (default) keeps exactly what attention computed, so a
  // migrated sequence continues bit for bit; bf16/f16 halve the cache (a migration between
  // caches of different dtypes converts the blocks on receipt).
  kernels::DType kv_dtype = kernels::DType::kF32;
  int max_batched_tokens = 512;   // token budget per step
  int max_num_seqs = 64;          // sequences per step
  int max_model_len = 0;          // 0: config.json's max_position_embeddings (capped by the cache)
  // (0, 1]: run as a card this fraction as fast as the hardware: each forward pass is followed
  // by a pause that stretches it to 1/speed of its time. The dev cluster's slower simulated GPU
  // classes use it on the CPU backend; what the engine measures (prefill rate) includes it.
  double speed = 1.0;
};

// One sequence as the control API shows it.
struct SequenceInfo {
  std::string request_id;
  std::string state;  // "running" or "waiting"
  int64_t prompt_tokens = 0, generated_tokens = 0;
  int64_t position = 0;  // tokens whose K/V are in the cache
  std::vector<int32_t> blocks;
};

// Everything that fixes a sequence's future, for migration: with the same model, the same
// state gives the same tokens on any engine (sampling depends only on (seed, step)).
struct SequenceSnapshot {
  GenerationRequest request;       // as accepted: the seed resolved, in request.seed
  std::vector<int32_t> generated;  // tokens generated so far
  int64_t position = 0;            // tokens (prompt + generated) whose K/V the cache holds
  int64_t kv_epoch = 0;            // bumped whenever the sequence's cache is dropped (preemption)
  std::string text_bytes;          // the generated text so far (stop strings cut)
  int64_t text_emitted = 0;        // how much of it the client has been sent
  bool running = false;            // false: waiting in the queue
};

struct EngineStats {
  int64_t running = 0, waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0;
  int64_t preemptions_total = 0;
  int64_t prompt_tokens_total = 0;     // prefill tokens computed (recomputes included)
  int64_t generated_tokens_total = 0;
  int64_t steps_total = 0;
  double forward_seconds_total = 0;   // in forward passes
  double throttle_seconds_total = 0;  // in the pauses that EngineOptions::speed < 1 adds
  int64_t last_step_tokens = 0, last_step_sequences = 0;  // the most recent batch
  // Tokens per second of the forward passes over at least kPrefillRateMinTokens tokens (mostly
  // prefill): what recomputing a migrated sequence costs here. 0 before any such step.
  double prefill_tokens_per_s = 0;
};
inline constexpr int64_t kPrefillRateMinTokens = 32;

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> create(std::shared_ptr<const Model> model, const EngineOptions& options);

  // Checks a request against the model and the context limit, without queueing it: empty id,
  // empty prompt, token ids outside the vocabulary, a prompt that leaves no room in the context,
  // bad sampling values. Reads only what is fixed at creation, so any thread may call it.
  Status validate(const GenerationRequest& request) const;
  // Queues a request. Errors (nothing queued): those of validate(), and an id already in use.
  Status add_request(GenerationRequest request);
  // Ends a request now; its blocks are freed and an abort event is returned by the next step.
  Status cancel(const std::string& request_id);
  // Runs one scheduler iteration and returns its events (empty when idle).
  StatusOr<std::vector<TokenEvent>> step();

  bool has_unfinished() const { return !running_.empty() || !waiting_.empty() || !pending_events_.empty(); }
  EngineStats stats() const;
  std::vector<SequenceInfo> sequences() const;

  // Migration (driven by agent/migration on the engine thread).
  StatusOr<SequenceSnapshot> snapshot(const std::string& request_id) const;
  // Packed KV blocks [first_block, first_block + count) of the sequence's block table, each
  // kv_layout().block_bytes() long.
  Status read_kv_blocks(const std::string& request_id, int64_t first_block, int64_t count, void* out);
  // Takes out a sequence that continues elsewhere: frees its blocks, emits no event.
  Status detach(const std::string& request_id);
  // Adds a migrated sequence. With kv (the packed blocks holding positions [0, position) in
  // kv_layout()), it resumes decoding where it was; without, its prompt and generated tokens
  // are prefilled again (recompute) and it continues identically. Errors: an id in use, a
  // state that does not fit this engine (tokens outside the vocabulary, beyond the context),
  // no free blocks for the KV (kResourceExhausted: nothing changed; recompute can still work).
  Status import_sequence(const SequenceSnapshot& snapshot, const void* kv);
  // Migration target: the KV of a sequence still arriving goes straight into this engine's pool
  // (blocks reserved under its request id, not yet a sequence), so that the switch writes only
  // the last few blocks and its pause does not grow with the context. stage_kv writes packed
  // blocks [first_block, first_block + count) in kv_layout(), reserving blocks up to there;
  // kResourceExhausted when the pool has no room (nothing changed). import_staged adds the
  // sequence with the staged blocks as its cache (they must cover its position) and frees any
  // staged beyond; drop_staged frees a reservation (a failed or finished transfer).
  Status stage_kv(const std::string& request_id, int64_t first_block, int64_t count, const void* data);
  Status import_staged(const SequenceSnapshot& snapshot);
  void drop_staged(const std::string& request_id);
  int64_t staged_blocks(const std::string& request_id) const {
    auto it = staged_.find(request_id);
    return it == staged_.end() ? 0 : static_cast<int64_t>(it->second.size());
  }
  const kernels::KvLayout& kv_layout() const { return executor_->kv_layout(); }
  const char* backend_name() const { return executor_->backend_name(); }
  ModelExecutor::WeightUpload weight_upload() const { return executor_->weight_upload(); }
  const Model& model() const { return *model_; }
  int max_model_len() const { return max_model_len_; }
  int max_num_seqs() const { return options_.max_num_seqs; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Sequence {
    GenerationRequest request;
    std::vector<int32_t> tokens;  // prompt then generated
    int64_t prompt_len = 0;
    int64_t computed = 0;         // tokens whose K/V are in the cache
    int64_t kv_epoch = 0;         // bumped when computed drops back to 0
    std::vector<int32_t> blocks;  // block table
    TextStream text;
    int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  };
  struct Scheduled {
    Sequence* seq;
    int64_t start, count;
  };

  Engine() = default;
  std::vector<Scheduled> schedule();
  bool grow_blocks(Sequence* seq, int64_t tokens);
  void preempt(Sequence* seq);
  void release(Sequence* seq);
  // Appends a sampled token, applies the stop conditions, returns the event.
  TokenEvent accept_token(Sequence* seq, int32_t token);
  bool is_eos(int32_t token) const;
  // The checks and the Sequence of an import (its cache not yet attached).
  StatusOr<std::unique_ptr<Sequence>> imported_sequence(const SequenceSnapshot& s) const;

  std::shared_ptr<const Model> model_;
  std::unique_ptr<ModelExecutor> executor_;
  std::unique_ptr<KvBlockAllocator> allocator_;
  EngineOptions options_;
  int max_model_len_ = 0;
  std::map<std::string, std::unique_ptr<Sequence>> sequences_;
  std::vector<Sequence*> running_;  // admission order
  std::deque<Sequence*> waiting_;
  std::vector<TokenEvent> pending_events_;
  std::map<std::string, std::vector<int32_t>> staged_;
  int64_t prefill_rate_tokens_ = 0;  // the forward passes behind stats().prefill_tokens_per_s
  double prefill_rate_seconds_ = 0;  // migration target: reserved blocks by request id
  EngineStats stats_;
  ForwardBatch batch_;
  std::vector<float> logits_;
  std::vector<std::pair<float, int32_t>> sample_scratch_;
};

}  // namespace hotswap::engine
