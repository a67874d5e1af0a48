#include "agent/migration/migration_session.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <set>

#include "kernels/ops.h"

namespace hotswap::migration {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

const char* migration_mode_name(MigrationMode m) {
  switch (m) {
    case MigrationMode::kKv:
      return "kv";
    case MigrationMode::kRecompute:
      return "recompute";
    case MigrationMode::kAuto:
      return "auto";
  }
  return "?";
}

StatusOr<MigrationMode> parse_migration_mode(const std::string& name) {
  if (name == "kv") return MigrationMode::kKv;
  if (name == "recompute") return MigrationMode::kRecompute;
  if (name == "auto") return MigrationMode::kAuto;
  return invalid_argument("migration mode '" + name + "' is not one of kv, recompute, auto");
}

json MigrationReport::to_json() const {
  json r = json::array();
  for (const auto& x : rounds)
    r.push_back({{"sequences", x.sequences}, {"blocks", x.blocks}, {"bytes", x.bytes}, {"seconds", x.seconds}});
  json j = {{"result", result},
            {"mode", mode},
            {"precopy_end", precopy_end},
            {"rounds", r},
            {"sequences", sequences},
            {"queued", queued},
            {"recomputed", recomputed},
            {"bytes", bytes},
            {"link_bytes_per_s", link_bytes_per_s},
            {"prefill_tokens_per_s", prefill_tokens_per_s},
            {"estimated_downtime_ms", estimated_downtime_ms},
            {"switch_ms", switch_ms}};
  if (host_staging_cap_bytes > 0)
    j["host_staging"] = {{"peak_bytes", host_staged_bytes_peak}, {"cap_bytes", host_staging_cap_bytes}};
  if (!error.empty()) j["error"] = error;
  return j;
}

SequenceState to_sequence_state(const engine::SequenceSnapshot& s, const json& params, int64_t position,
                                int64_t kv_blocks) {
  SequenceState st;
  st.request_id = s.request.id;
  st.prompt = s.request.prompt;
  st.generated = s.generated;
  st.position = position;
  st.sampling.temperature = s.request.sampling.temperature;
  st.sampling.top_p = s.request.sampling.top_p;
  st.sampling.top_k = s.request.sampling.top_k;
  st.sampling.seed = s.request.seed.value_or(s.request.sampling.seed);
  st.stop.max_tokens = s.request.stop.max_tokens;
  st.stop.stop = s.request.stop.stop;
  st.stop.stop_token_ids = s.request.stop.stop_token_ids;
  st.stop.ignore_eos = s.request.stop.ignore_eos;
  st.stream.text_bytes = s.text_bytes;
  st.stream.text_emitted_bytes = s.text_emitted;
  st.stream.last_event_id = params.is_object() ? params.value("last_event_id", int64_t{-1}) : -1;
  st.params = params.is_object() ? params : json::object();
  st.kv_blocks = kv_blocks;
  return st;
}

engine::SequenceSnapshot to_engine_snapshot(const SequenceState& s) {
  engine::SequenceSnapshot e;
  e.request.id = s.request_id;
  e.request.prompt = s.prompt;
  e.request.sampling.temperature = static_cast<float>(s.sampling.temperature);
  e.request.sampling.top_p = static_cast<float>(s.sampling.top_p);
  e.request.sampling.top_k = s.sampling.top_k;
  e.request.sampling.seed = s.sampling.seed;
  e.request.seed = s.sampling.seed;
  e.request.stop.max_tokens = s.stop.max_tokens;
  e.request.stop.stop = s.stop.stop;
  e.request.stop.stop_token_ids = s.stop.stop_token_ids;
  e.request.stop.ignore_eos = s.stop.ignore_eos;
  e.generated = s.generated;
  e.position = s.position;
  e.text_bytes = s.stream.text_bytes;
  e.text_emitted = s.stream.text_emitted_bytes;
  e.running = s.position > 0;
  return e;
}

namespace {

// The KV of one sequence read in one engine call, waiting to be sent.
struct Piece {
  SequenceState state;
  int64_t first_block = 0, count = 0;
  std::vector<uint8_t> data;
};

// Per migrating sequence: which of its blocks the target already holds.
struct Track {
  int64_t epoch = -1;
  int64_t sent_blocks = 0;  // blocks [0, sent_blocks) are final and sent
  SequenceState last_state;  // the latest state sent (without KV data)
  bool finished_sent = false;
};

}  // namespace

std::chrono::milliseconds effective_switch_timeout(const SourcePlan& plan) {
  if (plan.switch_timeout.count() > 0) return plan.switch_timeout;
  const auto from_budget = std::chrono::milliseconds(static_cast<int64_t>(40 * plan.downtime_budget_ms));
  return std::max(std::chrono::milliseconds(2000), from_budget);
}

StatusOr<MigrationReport> run_source(const SourcePlan& plan, ChunkSender& sender, const EngineCall& engine,
                                     const SourceHooks& hooks) {
  MigrationReport rep;
  rep.precopy_end = "none";
  rep.prefill_tokens_per_s = plan.prefill_tokens_per_s;
  kernels::KvLayout layout;
  std::vector<std::string> ids;
  HOTSWAP_RETURN_IF_ERROR(engine([&](engine::Engine& e) {
    layout = e.kv_layout();
    if (plan.request_ids.empty()) {
      for (const auto& s : e.sequences()) ids.push_back(s.request_id);
      return Status();
    }
    for (const auto& id : plan.request_ids) {
      if (!e.snapshot(id).ok()) return not_found("no request '" + id + "' to migrate");
      ids.push_back(id);
    }
    return Status();
  }));
  const int64_t block_bytes = static_cast<int64_t>(layout.block_bytes());
  auto params_of = [&](const std::string& id) { return hooks.params ? hooks.params(id) : json::object(); };

  // Writes wait plan.timeout each, but in the switch no longer than what is left of its deadline.
  std::optional<Clock::time_point> switch_deadline;
  auto wait_for = [&]() -> std::chrono::milliseconds {
    if (!switch_deadline) return plan.timeout;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*switch_deadline - Clock::now());
    return std::max(left, std::chrono::milliseconds(1));
  };
  SnapshotWriter writer([&sender, &wait_for](const ChunkHeader& header,
                                             std::span<const std::span<const uint8_t>> pieces, const PieceOwner& owner) {
    return sender.write_chunk(header, pieces, wait_for(), owner);
  });
  auto fail = [&](const Status& st) {
    rep.result = "failed";
    rep.error = st.to_string();
    sender.abort(st);
    return rep;
  };
  Manifest m;
  m.migration_id = plan.migration_id;
  m.source = plan.source;
  m.model_digest = plan.model_digest;
  m.architecture = plan.architecture;
  m.weight_dtype = plan.weight_dtype;
  m.kv_layout = layout;
  m.recompute_only = plan.mode == MigrationMode::kRecompute;
  m.created_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  if (Status st = writer.write_manifest(m); !st.ok()) return fail(st);

  MigrationMode mode = plan.mode;
  std::map<std::string, Track> track;
  std::set<std::string> recompute_ids;  // sequences the convergence rule sends without KV
  double sent_seconds = 0;
  int64_t sent_bytes = 0;

  // Reads the migrating running sequences' unsent blocks (and their states) in one engine call:
  // all of them (max_bytes 0: the switch), or up to max_bytes of blocks, at least one block,
  // setting *capped when some were left for the next call.
  auto read_dirty = [&](std::vector<Piece>* pieces, bool detach, std::vector<engine::SequenceSnapshot>* snaps,
                        int64_t max_bytes = 0, bool* capped = nullptr) {
    return engine([&](engine::Engine& e) {
      std::vector<std::string> gone;
      int64_t read_bytes = 0;
      for (const auto& id : ids) {
        auto snap = e.snapshot(id);
        if (!snap.ok()) {
          // Finished meanwhile: nothing left to move, but a target holding an earlier state of
          // it must forget it.
          auto t = track.find(id);
          if (t == track.end() || t->second.last_state.request_id.empty() || t->second.finished_sent) continue;
          Piece p;
          p.state = t->second.last_state;
          p.state.position = 0;
          p.state.kv_blocks = 0;
          p.state.finished = true;
          t->second.finished_sent = true;
          pieces->push_back(std::move(p));
          continue;
        }
        const bool with_kv =
            mode == MigrationMode::kKv && snap->running && snap->position > 0 && !recompute_ids.count(id);
        Piece p;
        if (with_kv) {
          Track& t = track[id];
          if (t.epoch != snap->kv_epoch) {  // its cache was dropped (preempted): all of it again
            t.epoch = snap->kv_epoch;
            t.sent_blocks = 0;
          }
          const int64_t total = layout.blocks_for(snap->position);
          p.state = to_sequence_state(*snap, params_of(id), snap->position, total);
          p.first_block = std::min(t.sent_blocks, total);
          p.count = total - p.first_block;
          if (max_bytes > 0) {
            // A pre-copy slice sends full blocks only: the partial tail block is rewritten by
            // every step, so it goes in the switch (and cannot hog every slice meanwhile).
            p.count = std::max<int64_t>(0, snap->position / layout.block_size - p.first_block);
            const int64_t room = std::max<int64_t>(read_bytes == 0 ? 1 : 0, (max_bytes - read_bytes) / block_bytes);
            if (p.count > room) {
              p.count = room;
              *capped = true;
            }
            if (p.count == 0) continue;  // the next slice
          }
          if (p.count > 0) {
            p.data.resize(static_cast<size_t>(p.count * block_bytes));
            HOTSWAP_RETURN_IF_ERROR(e.read_kv_blocks(id, p.first_block, p.count, p.data.data()));
            read_bytes += p.count * block_bytes;
          }
          // Full blocks are final; the partial tail block goes again.
          t.sent_blocks = std::min(p.first_block + p.count, snap->position / layout.block_size);
          t.last_state = p.state;
        } else if (detach) {
          p.state = to_sequence_state(*snap, params_of(id), 0, 0);
        } else {
          continue;  // queued, or sent without KV: only at the switch
        }
        if (detach) {
          HOTSWAP_RETURN_IF_ERROR(e.detach(id));
          gone.push_back(id);
          snaps->push_back(*snap);
        }
        pieces->push_back(std::move(p));
      }
      if (detach && hooks.on_detached) hooks.on_detached(gone);
      return Status();
    });
  };
  // Writes pieces into the stream (on their way, not yet acknowledged), counting blocks in *r.
  // Each piece's block bytes move into the stream: the sender keeps them, uncopied, until the
  // target acknowledges them.
  auto write_pieces = [&](std::vector<Piece>& pieces, int64_t round, RoundReport* r) -> Status {
    for (auto& p : pieces) {
      HOTSWAP_RETURN_IF_ERROR(writer.write_sequence_state(p.state));
      if (p.count > 0) {
        KvBlocks kb;
        kb.request_id = p.state.request_id;
        kb.first_block = p.first_block;
        kb.count = p.count;
        kb.round = round;
        kb.block_bytes = static_cast<uint64_t>(block_bytes);
        auto bytes = std::make_shared<const std::vector<uint8_t>>(std::move(p.data));
        kb.data = std::span<const uint8_t>(bytes->data(), bytes->size());
        kb.owner = bytes;
        HOTSWAP_RETURN_IF_ERROR(writer.write_kv_blocks(kb));
        r->blocks += p.count;
      }
    }
    return Status();
  };
  // One round: every unsent block, read in slices while decoding goes on (precopy), or all at
  // once (the switch, pieces read already); done when the target acknowledged all of it.
  auto send_round = [&](std::vector<Piece>* first, int64_t round, RoundReport* r, bool precopy) -> Status {
    auto t0 = Clock::now();
    const uint64_t before = sender.stats().bytes_written;
    std::set<std::string> seen;
    for (bool capped = true; capped;) {
      capped = false;
      std::vector<Piece> pieces;
      if (precopy) {
        HOTSWAP_RETURN_IF_ERROR(read_dirty(&pieces, false, nullptr, std::max<int64_t>(1, plan.precopy_slice_bytes), &capped));
      } else {
        pieces = std::move(*first);
      }
      HOTSWAP_RETURN_IF_ERROR(write_pieces(pieces, round, r));
      for (const auto& p : pieces) seen.insert(p.state.request_id);  // one read in slices counts once
      r->sequences = static_cast<int64_t>(seen.size());
    }
    HOTSWAP_RETURN_IF_ERROR(sender.flush(plan.timeout));
    r->bytes = static_cast<int64_t>(sender.stats().bytes_written - before);
    r->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    sent_bytes += r->bytes;
    sent_seconds += r->seconds;
    rep.link_bytes_per_s = sent_seconds > 0 ? sent_bytes / sent_seconds : 0;
    return Status();
  };
  // Blocks that would have to go now: each sequence's unsent blocks.
  auto dirty_blocks = [&](int64_t* blocks, int64_t* tokens) {
    return engine([&](engine::Engine& e) {
      *blocks = 0;
      *tokens = 0;
      for (const auto& id : ids) {
        auto snap = e.snapshot(id);
        if (!snap.ok()) continue;
        *tokens += static_cast<int64_t>(snap->request.prompt.size() + snap->generated.size());
        if (!snap->running || snap->position == 0) continue;
        auto it = track.find(id);
        int64_t sent = (it == track.end() || it->second.epoch != snap->kv_epoch) ? 0 : it->second.sent_blocks;
        *blocks += layout.blocks_for(snap->position) - std::min(sent, layout.blocks_for(snap->position));
      }
      return Status();
    });
  };

  if (mode != MigrationMode::kRecompute) {
    MigrationMode precopy_mode = mode;
    mode = MigrationMode::kKv;
    int64_t prev_dirty = std::numeric_limits<int64_t>::max();
    // No rounds at all is stop-and-copy: every block goes during the pause.
    if (plan.max_rounds > 0) rep.precopy_end = "round_limit";
    for (int round = 0; round < plan.max_rounds; ++round) {
      RoundReport r;
      if (Status st = send_round(nullptr, round, &r, /*precopy=*/true); !st.ok()) return fail(st);
      rep.rounds.push_back(r);
      int64_t dirty = 0, tokens = 0;
      if (Status st = dirty_blocks(&dirty, &tokens); !st.ok()) return fail(st);
      const double rate = std::max(rep.link_bytes_per_s, 1.0);
      rep.estimated_downtime_ms = 1000.0 * static_cast<double>(dirty * block_bytes) / rate;
      if (precopy_mode == MigrationMode::kAuto && round == 0 && plan.prefill_tokens_per_s > 0) {
        // Auto: the whole KV again at this rate, against prefilling every token on the target.
        double kv_s = static_cast<double>(sent_bytes) / rate;
        double recompute_s = static_cast<double>(tokens) / plan.prefill_tokens_per_s;
        if (recompute_s < kv_s) {
          mode = MigrationMode::kRecompute;
          rep.precopy_end = "auto_recompute";
          break;
        }
      }
      if (rep.estimated_downtime_ms <= plan.downtime_budget_ms) {
        rep.precopy_end = "budget";
        break;
      }
      if (dirty >= prev_dirty) {
        // Decoding dirties blocks faster than the link sends them: stop here. What is left
        // does not fit the budget, so those sequences go without KV (recomputed on arrival).
        rep.precopy_end = "not_converging";
        for (const auto& id : ids) recompute_ids.insert(id);
        break;
      }
      prev_dirty = dirty;
    }
  }
  rep.mode = migration_mode_name(mode);

  // The switch: the pause starts here, and ends by its deadline one way or the other.
  const auto pause = Clock::now();
  const auto switch_timeout = effective_switch_timeout(plan);
  switch_deadline = pause + switch_timeout;
  std::vector<Piece> last;
  std::vector<engine::SequenceSnapshot> snaps;
  Status st = read_dirty(&last, true, &snaps);
  auto roll_back = [&](Status why) {
    if (Clock::now() >= *switch_deadline)
      why = why.with_context("the switch's deadline of " + std::to_string(switch_timeout.count()) +
                             " ms passed (switch_timeout_ms)");
    sender.abort(why);
    std::vector<std::string> back;
    Status restored = engine([&](engine::Engine& e) {
      for (const auto& s : snaps) {
        if (e.import_sequence(s, nullptr).ok()) back.push_back(s.request.id);
      }
      if (hooks.on_restored) hooks.on_restored(back);
      return Status();
    });
    rep.result = restored.ok() && back.size() == snaps.size() ? "rolled_back" : "failed";
    rep.error = why.to_string();
    return rep;
  };
  if (!st.ok()) return roll_back(st);
  for (const auto& p : last) {
    if (p.state.finished) continue;
    if (p.state.position > 0) {
      ++rep.sequences;
    } else if (std::find_if(snaps.begin(), snaps.end(), [&](const engine::SequenceSnapshot& s) {
                 return s.request.id == p.state.request_id && s.running;
               }) != snaps.end()) {
      ++rep.sequences;
      ++rep.recomputed;
    } else {
      ++rep.queued;
    }
  }
  RoundReport final_round;
  std::vector<Piece> running, queued;
  for (auto& p : last) {
    bool was_running = std::any_of(snaps.begin(), snaps.end(), [&](const engine::SequenceSnapshot& s) {
      return s.request.id == p.state.request_id && s.running;
    });
    (was_running || p.state.finished ? running : queued).push_back(std::move(p));
  }
  st = send_round(&running, static_cast<int64_t>(rep.rounds.size()), &final_round, /*precopy=*/false);
  for (const auto& q : queued)
    if (st.ok()) st = writer.write_queued_request(q.state);
  if (st.ok()) st = writer.write_end();
  if (st.ok()) st = sender.flush(wait_for());
  if (!st.ok()) return roll_back(st);
  auto reply = sender.await_reply(wait_for());
  if (!reply.ok()) return roll_back(reply.status());
  json j = json::parse(*reply, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.value("switched", false)) {
    std::string why = j.is_object() ? j.value("error", std::string("no reason given")) : *reply;
    return roll_back(unavailable("the target refused the switch: " + why));
  }
  // Taken: the target reads the close as consent. An abort() that came first told it otherwise.
  if (Status taken = sender.commit(); !taken.ok()) return roll_back(taken);
  rep.switch_ms = std::chrono::duration<double, std::milli>(Clock::now() - pause).count();
  rep.bytes = static_cast<int64_t>(sender.stats().bytes_written);
  rep.result = "switched";
  return rep;
}

StatusOr<MigrationReport> run_target(const TargetPlan& plan, ChunkReceiver& receiver, const EngineCall& engine,
                                     const TargetHooks& hooks) {
  MigrationReport rep;
  kernels::KvLayout ours;
  int64_t max_len = 0;
  uint64_t pool_bytes = 0;
  HOTSWAP_RETURN_IF_ERROR(engine([&](engine::Engine& e) {
    ours = e.kv_layout();
    max_len = e.max_model_len();
    pool_bytes = static_cast<uint64_t>(e.stats().kv_blocks_total) * ours.block_bytes();
    return Status();
  }));
  // What a source may make this target hold, whatever it claims: no sequence longer than this
  // model serves, and no more KV staged in host memory than the pool could ever take (beyond
  // that a sequence is recomputed on import, as when the pool is full).
  uint64_t host_staged_bytes = 0;
  // KV blocks of the same block size go straight into the engine's pool as they arrive
  // (Engine::stage_kv; another dtype is converted chunk by chunk), so the switch writes only the
  // last ones; a sequence the pool has no room for is recomputed. Another block size stages in
  // host memory and is converted at the end.
  std::set<std::string> in_pool;   // request ids whose KV is staged in the engine
  std::set<std::string> no_room;   // the pool ran out for them: recomputed on import
  auto drop_pool = [&] {
    if (in_pool.empty()) return;
    (void)engine([&](engine::Engine& e) {
      for (const auto& id : in_pool) e.drop_staged(id);
      return Status();
    });
    in_pool.clear();
  };
  bool ended = false;  // End arrived: the source waits for a reply; before it, an abort tells it
  auto fail = [&](const Status& st) {
    drop_pool();
    rep.result = "failed";
    rep.error = st.to_string();
    if (ended) {
      (void)receiver.reply(json{{"switched", false}, {"error", st.to_string()}}.dump(), plan.timeout);
    } else {
      receiver.abort(st);
    }
    return rep;
  };
  std::optional<Manifest> manifest;
  bool pool_staging = false;  // the manifest's block size is ours
  std::map<std::string, SequenceState> states;
  std::vector<std::string> order;  // arrival order of the sequences
  std::map<std::string, std::vector<uint8_t>> staged;  // host staging (see above)
  std::vector<uint8_t> converted;
  std::vector<SequenceState> queued;
  std::vector<std::string> imported_ids;
  for (;;) {
    auto chunk = receiver.next(plan.timeout);
    if (!chunk.ok()) {
      drop_pool();
      rep.result = "failed";
      rep.error = chunk.status().to_string();
      return rep;
    }
    switch (chunk->kind) {
      case ChunkKind::kManifest: {
        const Manifest& mf = *chunk->manifest;
        const bool other_version = !plan.model_digest.empty() && mf.model_digest != plan.model_digest;
        if (other_version && !mf.recompute_only)
          return fail(failed_precondition("model digest " + mf.model_digest + " differs from this agent's " +
                                          plan.model_digest + ": only a recompute migration may change the weights"));
        const auto& l = mf.kv_layout;
        if (other_version) {
          // A new version of the model: the sequences are re-run from their token ids, so the
          // source's KV layout does not matter.
        } else if (l.n_layers != ours.n_layers || l.n_kv_heads != ours.n_kv_heads || l.head_dim != ours.head_dim)
          return fail(failed_precondition("the source's KV layout (" + std::to_string(l.n_layers) + " layers, " +
                                          std::to_string(l.n_kv_heads) + " KV heads, head_dim " +
                                          std::to_string(l.head_dim) + ") is not this model's"));
        manifest = mf;
        pool_staging = l.block_size == ours.block_size;
        if (!pool_staging) rep.host_staging_cap_bytes = pool_bytes;
        break;
      }
      case ChunkKind::kSequenceState: {
        const SequenceState& s = *chunk->sequence_state;
        if (s.finished) {
          // It ended on the source during pre-copy: its client has everything already.
          states.erase(s.request_id);
          staged.erase(s.request_id);
          if (in_pool.erase(s.request_id)) {
            Status dst = engine([&](engine::Engine& e) {
              e.drop_staged(s.request_id);
              return Status();
            });
            if (!dst.ok()) return fail(dst);
          }
          order.erase(std::remove(order.begin(), order.end(), s.request_id), order.end());
          break;
        }
        if (s.position > max_len)
          return fail(failed_precondition("request '" + s.request_id + "' is at position " +
                                          std::to_string(s.position) + ", beyond this model's " +
                                          std::to_string(max_len) + " tokens of context"));
        if (!states.count(s.request_id)) order.push_back(s.request_id);
        if (!pool_staging && !no_room.count(s.request_id)) {
          auto& buf = staged[s.request_id];
          const uint64_t want = static_cast<uint64_t>(s.kv_blocks) * manifest->kv_layout.block_bytes();
          host_staged_bytes -= buf.size();
          if (host_staged_bytes + want > pool_bytes) {
            no_room.insert(s.request_id);
            staged.erase(s.request_id);
          } else {
            buf.resize(static_cast<size_t>(want));
            host_staged_bytes += want;
            rep.host_staged_bytes_peak = std::max(rep.host_staged_bytes_peak, host_staged_bytes);
          }
        }
        states[s.request_id] = s;
        break;
      }
      case ChunkKind::kKvBlocks: {
        const KvBlocks& kb = *chunk->kv_blocks;
        rep.bytes += static_cast<int64_t>(kb.data.size());
        if (pool_staging && !no_room.count(kb.request_id)) {
          const void* data = kb.data.data();
          if (!(manifest->kv_layout == ours)) {  // same blocks, another dtype: convert this chunk
            converted.resize(static_cast<size_t>(kb.count) * ours.block_bytes());
            Status cst = kernels::kv_convert(kernels::CpuContext{}, manifest->kv_layout, data, ours, converted.data(),
                                             kb.count * ours.block_size);
            if (!cst.ok()) return fail(cst.with_context("request '" + kb.request_id + "'"));
            data = converted.data();
          }
          Status sst = engine([&](engine::Engine& e) {
            return e.stage_kv(kb.request_id, kb.first_block, kb.count, data);
          });
          if (sst.ok()) {
            in_pool.insert(kb.request_id);
            break;
          }
          if (sst.code() != StatusCode::kResourceExhausted) return fail(sst.with_context("request '" + kb.request_id + "'"));
          // No room in the pool: this sequence is recomputed on import (its later blocks are
          // not needed); what it holds in the pool goes back.
          no_room.insert(kb.request_id);
          if (in_pool.erase(kb.request_id)) {
            (void)engine([&](engine::Engine& e) {
              e.drop_staged(kb.request_id);
              return Status();
            });
          }
          break;
        }
        if (no_room.count(kb.request_id)) break;
        auto& buf = staged[kb.request_id];
        const size_t at = static_cast<size_t>(kb.first_block) * kb.block_bytes;
        std::copy(kb.data.begin(), kb.data.end(), buf.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      }
      case ChunkKind::kQueuedRequest:
        queued.push_back(*chunk->sequence_state);
        break;
      case ChunkKind::kEnd:
        ended = true;
        goto import;
    }
  }
import:
  Status st = engine([&](engine::Engine& e) {
    std::vector<std::string> done;
    auto undo = [&](const Status& why) {
      for (const auto& id : done) (void)e.detach(id);
      return why;
    };
    const kernels::KvLayout& theirs = manifest->kv_layout;
    std::vector<std::pair<engine::SequenceSnapshot, const json*>> imported;
    for (const auto& id : order) {
      const SequenceState& s = states.at(id);
      engine::SequenceSnapshot snap = to_engine_snapshot(s);
      bool with_kv = false;
      Status ist;
      if (s.position > 0 && in_pool.count(id)) {
        ist = e.import_staged(snap);
        with_kv = ist.ok();
        if (ist.ok()) in_pool.erase(id);
      } else if (s.position > 0 && staged.count(id)) {
        const void* kv = staged.at(id).data();
        if (!(theirs == ours)) {
          // Another block size: convert the whole sequence now.
          converted.assign(static_cast<size_t>(ours.blocks_for(s.position)) * ours.block_bytes(), 0);
          Status cst = kernels::kv_convert(kernels::CpuContext{}, theirs, kv, ours, converted.data(), s.position);
          if (!cst.ok()) return undo(cst.with_context("request '" + id + "'"));
          kv = converted.data();
        }
        ist = e.import_sequence(snap, kv);
        with_kv = ist.ok();
      } else {
        ist = resource_exhausted("no KV came for it");
      }
      if (ist.code() == StatusCode::kResourceExhausted) {
        ist = e.import_sequence(snap, nullptr);  // no KV for it here: recompute it
        with_kv = false;
      }
      if (!ist.ok()) return undo(ist);
      done.push_back(id);
      ++rep.sequences;
      if (!with_kv) ++rep.recomputed;
      imported.emplace_back(std::move(snap), &s.params);
    }
    for (const auto& q : queued) {
      engine::SequenceSnapshot snap = to_engine_snapshot(q);
      Status ist = e.import_sequence(snap, nullptr);
      if (!ist.ok()) return undo(ist);
      done.push_back(q.request_id);
      ++rep.queued;
      imported.emplace_back(std::move(snap), &q.params);
    }
    // Only once every import succeeded do the sequences get their sinks.
    imported_ids = done;
    if (hooks.on_imported)
      for (const auto& [snap, params] : imported) hooks.on_imported(snap, *params);
    return Status();
  });
  if (!st.ok()) return fail(st);
  drop_pool();  // anything staged for a sequence that did not take it (none when all went well)
  rep.result = "switched";
  rep.mode = rep.sequences > rep.recomputed ? "kv" : "recompute";
  Status rst = receiver.reply(
      json{{"switched", true}, {"sequences", rep.sequences}, {"queued", rep.queued}, {"recomputed", rep.recomputed}}
          .dump(),
      plan.timeout);
  if (!rst.ok()) rep.error = "imported, but the reply did not go out: " + rst.to_string();
  const SourceVerdict verdict = receiver.await_verdict(plan.timeout);
  if (!verdict.gave_up) return rep;
  // The source serves these itself again: what runs here would reach no client.
  Status dropped = engine([&](engine::Engine& e) {
    for (const auto& id : imported_ids) (void)e.detach(id);
    if (hooks.on_dropped) hooks.on_dropped(imported_ids);
    return Status();
  });
  rep.result = "rolled_back";
  rep.error = "the source gave up on the switch after this target imported; its " +
              std::to_string(imported_ids.size()) + " sequences were dropped here: " + verdict.detail;
  if (!dropped.ok()) {
    rep.result = "failed";
    rep.error += "; dropping them failed: " + dropped.to_string();
  }
  return rep;
}

}  // namespace hotswap::migration
