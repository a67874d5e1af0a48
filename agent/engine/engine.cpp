#include "agent/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "agent/engine/cuda_backend.h"

namespace hotswap::engine {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
  }
  return "";
}

const char* device_name(Device d) {
  return d == Device::kCuda ? "cuda" : "cpu";
}

StatusOr<Device> resolve_device(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  if (name == "auto") return cuda_device_count() > 0 ? Device::kCuda : Device::kCpu;
  return invalid_argument("device must be cpu, cuda or auto, got '" + name + "'");
}

StatusOr<std::unique_ptr<Engine>> Engine::create(std::shared_ptr<const Model> model, const EngineOptions& options) {
  if (options.block_size <= 0) return invalid_argument("block_size must be positive");
  if (options.max_batched_tokens <= 0) return invalid_argument("max_batched_tokens must be positive");
  if (options.max_num_seqs <= 0) return invalid_argument("max_num_seqs must be positive");
  if (!(options.speed > 0 && options.speed <= 1))
    return invalid_argument("speed must be in (0, 1], got " + std::to_string(options.speed));
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  const ModelConfig& c = model->config();
  kernels::KvLayout probe{c.num_hidden_layers, c.num_key_value_heads, c.head_dim, options.block_size,
                          options.kv_dtype};
  int64_t blocks = options.kv_blocks > 0 ? options.kv_blocks
                                         : options.kv_cache_bytes / static_cast<int64_t>(probe.block_bytes());
  if (blocks < 1)
    return invalid_argument("the KV cache (" + std::to_string(options.kv_cache_bytes) +
                            " bytes) holds no block; one block needs " + std::to_string(probe.block_bytes()));
  if (options.device == Device::kCuda) {
    CudaExecutorOptions eo;
    eo.device = options.gpu;
    eo.kv_blocks = blocks;
    eo.block_size = options.block_size;
    eo.kv_dtype = options.kv_dtype;
    HOTSWAP_ASSIGN_OR_RETURN(e->executor_, create_cuda_executor(model, eo));
  } else {
    CpuExecutorOptions eo;
    eo.threads = options.threads;
    eo.kv_blocks = blocks;
    eo.block_size = options.block_size;
    eo.kv_dtype = options.kv_dtype;
    HOTSWAP_ASSIGN_OR_RETURN(e->executor_, CpuExecutor::create(model, eo));
  }
  e->allocator_ = std::make_unique<KvBlockAllocator>(blocks);
  // A lone sequence can always grow to max_model_len, so preemption can always make progress.
  int64_t limit = options.max_model_len > 0 ? options.max_model_len : c.max_position_embeddings;
  limit = std::min<int64_t>(limit, c.max_position_embeddings);
  limit = std::min<int64_t>(limit, blocks * options.block_size);
  e->max_model_len_ = static_cast<int>(limit);
  e->model_ = std::move(model);
  return e;
}

Status Engine::validate(const GenerationRequest& r) const {
  if (r.id.empty()) return invalid_argument("request id is empty");
  if (r.prompt.empty()) return invalid_argument("request '" + r.id + "': the prompt has no tokens");
  const int32_t vocab = model_->config().vocab_size;
  for (size_t i = 0; i < r.prompt.size(); ++i)
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab)
      return invalid_argument("request '" + r.id + "': prompt token " + std::to_string(i) + " = " +
                              std::to_string(r.prompt[i]) + " is outside the vocabulary [0, " +
                              std::to_string(vocab) + ")");
  if (static_cast<int64_t>(r.prompt.size()) >= max_model_len_)
    return invalid_argument("request '" + r.id + "': the prompt has " + std::to_string(r.prompt.size()) +
                            " tokens; the context holds " + std::to_string(max_model_len_) +
                            ", so there is no room to generate");
  if (r.stop.max_tokens < 1)
    return invalid_argument("request '" + r.id + "': max_tokens must be >= 1, got " + std::to_string(r.stop.max_tokens));
  return r.sampling.validate().with_context("request '" + r.id + "'");
}

Status Engine::add_request(GenerationRequest r) {
  HOTSWAP_RETURN_IF_ERROR(validate(r));
  if (sequences_.count(r.id)) return invalid_argument("request id '" + r.id + "' is already in use");
  if (r.seed) {
    r.sampling.seed = *r.seed;
  } else {
    std::random_device rd;
    r.sampling.seed = (uint64_t{rd()} << 32) | rd();
    r.seed = r.sampling.seed;  // recorded: the sequence's future is fixed from here on
  }
  auto seq = std::make_unique<Sequence>();
  seq->tokens = r.prompt;
  seq->prompt_len = static_cast<int64_t>(r.prompt.size());
  seq->text = TextStream(r.stop.stop);
  seq->request = std::move(r);
  waiting_.push_back(seq.get());
  sequences_.emplace(seq->request.id, std::move(seq));
  return Status();
}

Status Engine::cancel(const std::string& id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return not_found("no request '" + id + "'");
  Sequence* seq = it->second.get();
  release(seq);
  TokenEvent ev;
  ev.request_id = id;
  ev.finish = FinishReason::kAbort;
  pending_events_.push_back(std::move(ev));
  sequences_.erase(it);
  return Status();
}

void Engine::release(Sequence* seq) {
  for (int32_t b : seq->blocks) allocator_->release(b);
  seq->blocks.clear();
  seq->computed = 0;
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
}

void Engine::preempt(Sequence* seq) {
  release(seq);
  ++seq->kv_epoch;
  waiting_.push_front(seq);
  ++stats_.preemptions_total;
}

bool Engine::grow_blocks(Sequence* seq, int64_t tokens) {
  const int64_t bs = options_.block_size;
  while (static_cast<int64_t>(seq->blocks.size()) * bs < tokens) {
    auto b = allocator_->allocate();
    if (!b) return false;
    seq->blocks.push_back(*b);
  }
  return true;
}

std::vector<Engine::Scheduled> Engine::schedule() {
  std::vector<Scheduled> out;
  int64_t budget = options_.max_batched_tokens;
  // Running sequences, oldest first. A victim of preemption is always newer than the
  // sequence that needs the block, so it is never one already scheduled in this step.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i];
    int64_t n = std::min<int64_t>(static_cast<int64_t>(seq->tokens.size()) - seq->computed, budget);
    bool preempted_self = false;
    while (!grow_blocks(seq, seq->computed + n)) {
      Sequence* victim = running_.back();
      preempt(victim);
      if (victim == seq) {
        preempted_self = true;
        break;
      }
    }
    if (preempted_self) break;
    out.push_back({seq, seq->computed, n});
    budget -= n;
    ++i;
  }
  // Then waiting requests in order, without preempting anyone for them.
  while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < options_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    int64_t n = std::min<int64_t>(static_cast<int64_t>(seq->tokens.size()) - seq->computed, budget);
    int64_t need = (seq->computed + n + options_.block_size - 1) / options_.block_size -
                   static_cast<int64_t>(seq->blocks.size());
    if (need > allocator_->free_count()) break;
    grow_blocks(seq, seq->computed + n);
    waiting_.pop_front();
    running_.push_back(seq);
    out.push_back({seq, seq->computed, n});
    budget -= n;
  }
  return out;
}

bool Engine::is_eos(int32_t token) const {
  const auto& eos = model_->eos_token_ids();
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

TokenEvent Engine::accept_token(Sequence* seq, int32_t token) {
  TokenEvent ev;
  ev.request_id = seq->request.id;
  ev.token = token;
  ev.index = seq->generated();
  seq->tokens.push_back(token);
  ++stats_.generated_tokens_total;
  const StopConditions& stop = seq->request.stop;
  bool stop_token = (!stop.ignore_eos && is_eos(token)) ||
                    std::find(stop.stop_token_ids.begin(), stop.stop_token_ids.end(), token) !=
                        stop.stop_token_ids.end();
  if (stop_token) {
    ev.text = seq->text.flush();
    ev.finish = FinishReason::kStop;
    return ev;
  }
  const Tokenizer& tok = model_->tokenizer();
  std::string bytes = tok.is_special(token) ? std::string() : tok.token_bytes(token);
  TextStream::Update up = seq->text.append(bytes);
  ev.text = std::move(up.text);
  if (up.stopped) {
    ev.finish = FinishReason::kStop;
  } else if (seq->generated() >= stop.max_tokens ||
             static_cast<int64_t>(seq->tokens.size()) >= max_model_len_) {
    ev.text += seq->text.flush();
    ev.finish = FinishReason::kLength;
  }
  return ev;
}

StatusOr<std::vector<TokenEvent>> Engine::step() {
  std::vector<TokenEvent> events = std::move(pending_events_);
  pending_events_.clear();
  std::vector<Scheduled> work = schedule();
  if (work.empty()) return events;

  ForwardBatch& b = batch_;
  b.tokens.clear(); b.positions.clear(); b.seq_index.clear(); b.slots.clear();
  b.block_tables.clear(); b.logit_rows.clear();
  int64_t stride = 0;
  for (const auto& w : work) stride = std::max<int64_t>(stride, static_cast<int64_t>(w.seq->blocks.size()));
  b.block_table_stride = stride;
  b.block_tables.assign(work.size() * stride, 0);
  const int64_t bs = options_.block_size;
  std::vector<Sequence*> sampled;
  for (size_t s = 0; s < work.size(); ++s) {
    const Scheduled& w = work[s];
    std::copy(w.seq->blocks.begin(), w.seq->blocks.end(), b.block_tables.begin() + s * stride);
    for (int64_t p = w.start; p < w.start + w.count; ++p) {
      b.tokens.push_back(w.seq->tokens[p]);
      b.positions.push_back(static_cast<int32_t>(p));
      b.seq_index.push_back(static_cast<int32_t>(s));
      b.slots.push_back(int64_t{w.seq->blocks[p / bs]} * bs + p % bs);
    }
    if (w.start + w.count == static_cast<int64_t>(w.seq->tokens.size())) {
      b.logit_rows.push_back(static_cast<int32_t>(b.tokens.size() - 1));
      sampled.push_back(w.seq);
    }
    if (w.start < w.seq->prompt_len) stats_.prompt_tokens_total += w.count;
  }
  const auto forward_start = std::chrono::steady_clock::now();
  HOTSWAP_RETURN_IF_ERROR(executor_->forward(b, &logits_));
  const auto forward_end = std::chrono::steady_clock::now();
  const double forward_seconds = std::chrono::duration<double>(forward_end - forward_start).count();
  stats_.forward_seconds_total += forward_seconds;
  if (options_.speed < 1) {
    // A slower card: the pass takes 1/speed of its time. sleep_until never returns early, so
    // the step takes at least that long.
    const auto pause = std::chrono::duration<double>(forward_seconds * (1 / options_.speed - 1));
    std::this_thread::sleep_until(forward_end + std::chrono::duration_cast<std::chrono::steady_clock::duration>(pause));
    stats_.throttle_seconds_total +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - forward_end).count();
  }
  if (static_cast<int64_t>(b.tokens.size()) >= kPrefillRateMinTokens) {
    prefill_rate_tokens_ += static_cast<int64_t>(b.tokens.size());
    prefill_rate_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - forward_start).count();
  }
  ++stats_.steps_total;
  stats_.last_step_tokens = static_cast<int64_t>(b.tokens.size());
  stats_.last_step_sequences = static_cast<int64_t>(work.size());
  for (const auto& w : work) w.seq->computed = w.start + w.count;

  const int32_t vocab = model_->config().vocab_size;
  for (size_t i = 0; i < sampled.size(); ++i) {
    Sequence* seq = sampled[i];
    int32_t token = sample_token(logits_.data() + i * vocab, vocab, seq->request.sampling,
                                 static_cast<uint64_t>(seq->generated()), &sample_scratch_);
    TokenEvent ev = accept_token(seq, token);
    bool finished = ev.finish != FinishReason::kNone;
    events.push_back(std::move(ev));
    if (finished) {
      std::string id = seq->request.id;
      release(seq);
      sequences_.erase(id);
    }
  }
  return events;
}

std::vector<SequenceInfo> Engine::sequences() const {
  std::vector<SequenceInfo> out;
  auto add = [&](const Sequence* seq, const char* state) {
    SequenceInfo info;
    info.request_id = seq->request.id;
    info.state = state;
    info.prompt_tokens = seq->prompt_len;
    info.generated_tokens = seq->generated();
    info.position = seq->computed;
    info.blocks = seq->blocks;
    out.push_back(std::move(info));
  };
  for (const Sequence* seq : running_) add(seq, "running");
  for (const Sequence* seq : waiting_) add(seq, "waiting");
  return out;
}

StatusOr<SequenceSnapshot> Engine::snapshot(const std::string& id) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return not_found("no request '" + id + "'");
  const Sequence& seq = *it->second;
  SequenceSnapshot s;
  s.request = seq.request;
  s.request.prompt.assign(seq.tokens.begin(), seq.tokens.begin() + seq.prompt_len);
  s.generated.assign(seq.tokens.begin() + seq.prompt_len, seq.tokens.end());
  s.position = seq.computed;
  s.kv_epoch = seq.kv_epoch;
  s.text_bytes = seq.text.bytes();
  s.text_emitted = static_cast<int64_t>(seq.text.emitted());
  s.running = std::find(running_.begin(), running_.end(), &seq) != running_.end();
  return s;
}

Status Engine::read_kv_blocks(const std::string& id, int64_t first_block, int64_t count, void* out) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return not_found("no request '" + id + "'");
  const auto& blocks = it->second->blocks;
  if (first_block < 0 || count < 0 || first_block + count > static_cast<int64_t>(blocks.size()))
    return invalid_argument("request '" + id + "': blocks [" + std::to_string(first_block) + ", " +
                            std::to_string(first_block + count) + ") outside its " + std::to_string(blocks.size()) +
                            " blocks");
  return executor_->read_kv_blocks(blocks.data() + first_block, count, out);
}

Status Engine::detach(const std::string& id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return not_found("no request '" + id + "'");
  release(it->second.get());
  sequences_.erase(it);
  return Status();
}

StatusOr<std::unique_ptr<Engine::Sequence>> Engine::imported_sequence(const SequenceSnapshot& s) const {
  GenerationRequest r = s.request;
  if (!r.seed) return invalid_argument("migrated request '" + r.id + "' has no resolved seed");
  r.sampling.seed = *r.seed;
  HOTSWAP_RETURN_IF_ERROR(validate(r));
  if (sequences_.count(r.id)) return invalid_argument("request id '" + r.id + "' is already in use");
  const int32_t vocab = model_->config().vocab_size;
  for (int32_t t : s.generated)
    if (t < 0 || t >= vocab)
      return invalid_argument("migrated request '" + r.id + "': generated token " + std::to_string(t) +
                              " is outside the vocabulary");
  const int64_t total = static_cast<int64_t>(r.prompt.size() + s.generated.size());
  if (total >= max_model_len_)
    return invalid_argument("migrated request '" + r.id + "' holds " + std::to_string(total) +
                            " tokens; this engine's context is " + std::to_string(max_model_len_));
  if (static_cast<int64_t>(s.generated.size()) >= r.stop.max_tokens)
    return invalid_argument("migrated request '" + r.id + "' has already generated its max_tokens");
  if (s.text_emitted < 0 || s.text_emitted > static_cast<int64_t>(s.text_bytes.size()))
    return invalid_argument("migrated request '" + r.id + "': text_emitted is outside its text");
  if (s.position < 0) return invalid_argument("migrated request '" + r.id + "': negative position");
  auto seq = std::make_unique<Sequence>();
  seq->tokens = r.prompt;
  seq->tokens.insert(seq->tokens.end(), s.generated.begin(), s.generated.end());
  seq->prompt_len = static_cast<int64_t>(r.prompt.size());
  seq->text = TextStream(r.stop.stop);
  seq->text.restore(s.text_bytes, static_cast<size_t>(s.text_emitted));
  seq->kv_epoch = s.kv_epoch;
  seq->request = std::move(r);
  return seq;
}

Status Engine::import_sequence(const SequenceSnapshot& s, const void* kv) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<Sequence> seq, imported_sequence(s));
  const int64_t total = static_cast<int64_t>(seq->tokens.size());
  // The last token's K/V is computed by the next step, which also samples after it.
  const int64_t position = kv != nullptr ? std::min(s.position, total - 1) : 0;
  if (position > 0) {
    const int64_t n = executor_->kv_layout().blocks_for(position);
    if (n > allocator_->free_count())
      return resource_exhausted("migrated request '" + seq->request.id + "' needs " + std::to_string(n) +
                                " KV blocks; " + std::to_string(allocator_->free_count()) + " are free");
    grow_blocks(seq.get(), position);
    Status st = executor_->write_kv_blocks(seq->blocks.data(), n, kv);
    if (!st.ok()) {
      for (int32_t b : seq->blocks) allocator_->release(b);
      return st;
    }
    seq->computed = position;
    running_.push_back(seq.get());
  } else {
    waiting_.push_front(seq.get());  // it was already admitted once: ahead of new requests
  }
  sequences_.emplace(seq->request.id, std::move(seq));
  return Status();
}

Status Engine::stage_kv(const std::string& request_id, int64_t first_block, int64_t count, const void* data) {
  if (first_block < 0 || count < 1) return invalid_argument("stage_kv: bad block range");
  if (sequences_.count(request_id)) return invalid_argument("request id '" + request_id + "' is already in use");
  const int64_t max_blocks = executor_->kv_layout().blocks_for(max_model_len_);
  if (first_block + count > max_blocks)
    return invalid_argument("staged KV of '" + request_id + "' reaches block " + std::to_string(first_block + count) +
                            "; this engine's context holds " + std::to_string(max_blocks));
  std::vector<int32_t>& blocks = staged_[request_id];
  const int64_t grow = first_block + count - static_cast<int64_t>(blocks.size());
  if (grow > allocator_->free_count()) {
    if (blocks.empty()) staged_.erase(request_id);
    return resource_exhausted("staging the KV of '" + request_id + "' needs " + std::to_string(grow) +
                              " more blocks; " + std::to_string(allocator_->free_count()) + " are free");
  }
  for (int64_t i = 0; i < grow; ++i) blocks.push_back(*allocator_->allocate());
  return executor_->write_kv_blocks(blocks.data() + first_block, count, data);
}

Status Engine::import_staged(const SequenceSnapshot& s) {
  auto it = staged_.find(s.request.id);
  if (it == staged_.end()) return failed_precondition("no staged KV for '" + s.request.id + "'");
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<Sequence> seq, imported_sequence(s));
  const int64_t position = std::min(s.position, static_cast<int64_t>(seq->tokens.size()) - 1);
  const int64_t need = executor_->kv_layout().blocks_for(position);
  if (position <= 0 || static_cast<int64_t>(it->second.size()) < need)
    return failed_precondition("staged KV of '" + s.request.id + "' holds " + std::to_string(it->second.size()) +
                               " blocks; position " + std::to_string(position) + " needs " + std::to_string(need));
  seq->blocks = std::move(it->second);
  staged_.erase(it);
  while (static_cast<int64_t>(seq->blocks.size()) > need) {
    allocator_->release(seq->blocks.back());
    seq->blocks.pop_back();
  }
  seq->computed = position;
  running_.push_back(seq.get());
  sequences_.emplace(seq->request.id, std::move(seq));
  return Status();
}

void Engine::drop_staged(const std::string& request_id) {
  auto it = staged_.find(request_id);
  if (it == staged_.end()) return;
  for (int32_t b : it->second) allocator_->release(b);
  staged_.erase(it);
}

EngineStats Engine::stats() const {
  EngineStats s = stats_;
  s.running = static_cast<int64_t>(running_.size());
  s.waiting = static_cast<int64_t>(waiting_.size());
  s.kv_blocks_total = allocator_->total();
  s.kv_blocks_used = allocator_->used_count();
  s.prefill_tokens_per_s = prefill_rate_seconds_ > 0 ? prefill_rate_tokens_ / prefill_rate_seconds_ : 0;
  return s;
}

}  // namespace hotswap::engine
