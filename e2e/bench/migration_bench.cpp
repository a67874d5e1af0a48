// hotswap-migration-bench: the client-visible downtime of a live migration against the context
// length, and the transport's throughput against the raw link, both measured in the same run.
//
// Downtime. Two in-process agents (A and B) serve the same model. For each context length L
// and method, one streaming client (hotswap-loadgen's runner, which timestamps every token as
// it comes off the socket) sends a prompt of L token ids to A; once it has --migrate-after
// tokens, the migration runs through the control APIs exactly as `hotswap-agent migrate` does
// (tcp transport), and the client stays connected to A, which relays B's tokens. Downtime is
// the stream's largest inter-token gap from the migration's start on, minus its median gap
// before it. Methods: stop-and-copy (kv mode, no pre-copy rounds: every block goes during the
// pause), kv (pre-copy), recompute (token ids only; B prefills). Each figure is the median of
// --repetitions runs; the tokens of every run are checked against the first method's.
//
// Throughput. A snapshot stream of --transfer-mb of KV blocks through the tcp transport (chunk
// framing, CRC32C, resend window, decoder) against plain TCP writes of as many bytes over
// 127.0.0.1 (link_probe.h), and against the same plain writes with only a copy on the writer
// and a CRC32C on the reader (the least work a checksummed, resend-capable transport adds),
// alternated --repetitions times; medians. And the same transport over TLS (tls_link.h), as
// agents with a deployment's TLS material run it, against the plaintext transport.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/migration/link_probe.h"
#include "agent/migration/snapshot.h"
#include "agent/migration/tcp_transport.h"
#include "agent/server/agent_server.h"
#include "agent/server/migration_client.h"
#include "common/flags.h"
#include "common/http.h"
#include "common/x509.h"
#include "e2e/loadgen/loadgen.h"

namespace hotswap {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

const std::string kToken = "migration-bench-control-token";

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Pair {
  std::unique_ptr<agent::AgentServer> a, b;
};

StatusOr<Pair> start_pair(const std::shared_ptr<const engine::Model>& model, const engine::EngineOptions& eo) {
  Pair p;
  for (auto* slot : {&p.a, &p.b}) {
    HOTSWAP_ASSIGN_OR_RETURN(auto eng, engine::Engine::create(model, eo));
    agent::AgentServerOptions so;
    so.model_name = "bench";
    so.control_token = kToken;
    so.allow_plaintext_migration = true;  // both agents on loopback; tls is measured by --transport tls
    HOTSWAP_ASSIGN_OR_RETURN(so.port, http::pick_free_port());
    HOTSWAP_ASSIGN_OR_RETURN(*slot, agent::AgentServer::start(model, std::move(eng), so));
  }
  return p;
}

struct Case {
  std::string method;  // stop-and-copy, kv, recompute
  int64_t context = 0;
};

struct CaseResult {
  double downtime_ms = 0, gap_before_ms = 0, gap_max_ms = 0, switch_ms = 0;
  int64_t rounds = 0, bytes = 0;
  std::string precopy_end;
  std::vector<int64_t> tokens;
};

// The generated tokens of A's one open request, from its control status; -1 when none.
StatusOr<int64_t> generated_on(const agent::AgentServer& s) {
  HOTSWAP_ASSIGN_OR_RETURN(json st, agent::control_call(s.url(), kToken, "GET", "/control/v1/status", json()));
  if (!st.contains("sequences") || !st["sequences"].is_array() || st["sequences"].empty()) return int64_t{-1};
  return st["sequences"][0].value("generated_tokens", int64_t{-1});
}

StatusOr<CaseResult> run_case(const std::shared_ptr<const engine::Model>& model, const engine::EngineOptions& eo,
                              const Case& c, const std::vector<int64_t>& prompt, int64_t max_tokens,
                              int64_t migrate_after) {
  HOTSWAP_ASSIGN_OR_RETURN(Pair p, start_pair(model, eo));
  loadgen::LoadgenConfig lc;
  lc.url = p.a->url();
  lc.model = "bench";
  lc.max_tokens = max_tokens;
  lc.prompt_ids = prompt;
  lc.ignore_eos = true;
  lc.temperature = 0;
  lc.request_timeout_s = 600;
  auto load = std::async(std::launch::async, [lc] { return loadgen::run_load(lc); });
  // Wait for the stream to be decoding steadily (bounded: prefill of the longest context on a
  // slow machine is seconds).
  const auto give_up = Clock::now() + std::chrono::seconds(300);
  for (;;) {
    HOTSWAP_ASSIGN_OR_RETURN(int64_t got, generated_on(*p.a));
    if (got >= migrate_after) break;
    if (Clock::now() > give_up) return unavailable("the stream never reached " + std::to_string(migrate_after) + " tokens");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  agent::MigrationCall call;
  call.source = p.a->url();
  call.target = p.b->url();
  call.token = kToken;
  call.transport = "tcp";
  call.mode = c.method == "recompute" ? "recompute" : "kv";
  call.max_rounds = c.method == "stop-and-copy" ? 0 : 8;
  call.downtime_budget_ms = 5;
  const Clock::time_point mig_start = Clock::now();
  HOTSWAP_ASSIGN_OR_RETURN(json st, agent::run_migration(call));
  if (st.value("phase", std::string()) != "Draining" && st.value("phase", std::string()) != "Completed")
    return unavailable("migration did not switch: " + st.dump());
  HOTSWAP_ASSIGN_OR_RETURN(loadgen::LoadRun run, load.get());
  if (run.requests.size() != 1 || !run.requests[0].ok())
    return unavailable("the stream failed: " + (run.requests.empty() ? std::string("none ran") : run.requests[0].error));
  const auto& r = run.requests[0];
  if (r.id_anomalies() != 0) return data_loss("the stream's event ids have gaps or repeats");
  if (static_cast<int64_t>(r.token_ids.size()) != max_tokens)
    return data_loss("the stream has " + std::to_string(r.token_ids.size()) + " tokens, not " + std::to_string(max_tokens));
  CaseResult out;
  std::vector<double> before;
  for (size_t i = 1; i < r.token_arrivals.size(); ++i) {
    const double gap = std::chrono::duration<double, std::milli>(r.token_arrivals[i] - r.token_arrivals[i - 1]).count();
    if (r.token_arrivals[i] < mig_start) before.push_back(gap);
    else out.gap_max_ms = std::max(out.gap_max_ms, gap);
  }
  out.gap_before_ms = median(before);
  out.downtime_ms = out.gap_max_ms - out.gap_before_ms;
  const json& rep = st["report"];
  out.switch_ms = rep.value("switch_ms", 0.0);
  out.rounds = rep.contains("rounds") ? static_cast<int64_t>(rep["rounds"].size()) : 0;
  out.bytes = rep.value("bytes", int64_t{0});
  out.precopy_end = rep.value("precopy_end", std::string());
  out.tokens = r.token_ids;
  p.a->stop();
  p.b->stop();
  return out;
}

// The tcp transport carrying `bytes` of KV blocks (4 MiB chunks) plus the stream's framing, to
// a receiver that decodes every chunk; bytes/s from the first write to the reply. Over TLS when
// `tls` is non-null (both ends with the same material, as a deployment's agents have).
StatusOr<double> transport_bytes_per_s(int64_t bytes, const migration::TlsContext* tls) {
  using namespace migration;
  HOTSWAP_ASSIGN_OR_RETURN(TcpListener listener, TcpListener::listen("127.0.0.1", 0));
  const std::chrono::milliseconds timeout(60000);
  auto target = std::async(std::launch::async, [&]() -> Status {
    HOTSWAP_ASSIGN_OR_RETURN(auto rx, listener.accept(timeout, {}, tls));
    for (;;) {
      HOTSWAP_ASSIGN_OR_RETURN(DecodedChunk c, rx->next(timeout));
      if (c.kind == ChunkKind::kEnd) break;
    }
    return rx->reply("{\"switched\":true}", timeout);
  });
  HOTSWAP_ASSIGN_OR_RETURN(auto tx, tcp_connect("127.0.0.1", listener.port(), SenderOptions{}, timeout, tls));
  kernels::KvLayout layout{8, 4, 64, 16, kernels::DType::kF32};  // the small preset's blocks
  const int64_t block_bytes = static_cast<int64_t>(layout.block_bytes());
  const int64_t per_chunk = std::max<int64_t>(1, (4 << 20) / block_bytes);
  const int64_t blocks = std::max<int64_t>(1, bytes / block_bytes);
  // One slice of blocks, sent again and again, owned as migration_session owns the slices it reads
  // (KvBlocks::owner): the sender keeps references to it, not copies.
  auto slice = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(per_chunk * block_bytes));
  std::vector<uint8_t>& data = *slice;
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + 7);
  SnapshotWriter w(snapshot_sink(*tx, timeout));
  Manifest m;
  m.migration_id = "bench";
  m.source = "bench";
  m.model_digest = "00";
  m.architecture = "LlamaForCausalLM";
  m.kv_layout = layout;
  SequenceState s;
  s.request_id = "r";
  s.prompt.assign(static_cast<size_t>(blocks * layout.block_size), 1);
  s.position = blocks * layout.block_size;
  s.kv_blocks = blocks;
  const auto t0 = Clock::now();
  HOTSWAP_RETURN_IF_ERROR(w.write_manifest(m));
  HOTSWAP_RETURN_IF_ERROR(w.write_sequence_state(s));
  for (int64_t first = 0; first < blocks; first += per_chunk) {
    const int64_t n = std::min(per_chunk, blocks - first);
    KvBlocks kb{"r", first, n, 0, static_cast<uint64_t>(block_bytes),
                std::span<const uint8_t>(data.data(), static_cast<size_t>(n * block_bytes)), slice};
    HOTSWAP_RETURN_IF_ERROR(w.write_kv_blocks(kb));
  }
  HOTSWAP_RETURN_IF_ERROR(w.write_end());
  HOTSWAP_RETURN_IF_ERROR(tx->await_reply(timeout).status());
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  HOTSWAP_RETURN_IF_ERROR(target.get());
  return static_cast<double>(tx->stats().bytes_written) / secs;
}

// A deployment's TLS material, as the operator makes it: a CA and one certificate it signed.
StatusOr<std::shared_ptr<const migration::TlsContext>> bench_tls_context() {
  x509::CertificateRequest ca_request, leaf_request;
  ca_request.common_name = "bench CA";
  ca_request.is_ca = true;
  leaf_request.common_name = "bench";
  HOTSWAP_ASSIGN_OR_RETURN(x509::CertifiedKey ca, x509::make_certificate(ca_request));
  HOTSWAP_ASSIGN_OR_RETURN(x509::CertifiedKey leaf, x509::make_certificate(leaf_request, &ca));
  return migration::TlsContext::create({ca.cert_pem, leaf.cert_pem, leaf.key_pem});
}

int run(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-migration-bench --model DIR [--contexts 512,2048,...] [--methods stop-and-copy,kv,recompute]\n"
      "                               [--max-tokens K] [--migrate-after N] [--repetitions R] [--transfer-mb MB]\n"
      "                               [--device cpu|cuda|auto] [--kv-cache-mb MB] [--io-threads N]");
  flags.add("model", "DIR", "model directory");
  flags.add("contexts", "LIST", "prompt lengths in tokens (default 512,2048 and the largest the model allows)");
  flags.add("methods", "LIST", "stop-and-copy, kv, recompute (default all three)");
  flags.add("max-tokens", "K", "tokens the stream generates (default 96)");
  flags.add("migrate-after", "N", "tokens before the migration starts (default 32)");
  flags.add("repetitions", "R", "runs of each case; medians are reported (default 3)");
  flags.add("transfer-mb", "MB", "size of the throughput measurement's stream (default 256; 0: skip it)");
  flags.add("device", "DEV", "where both agents' engines run: cpu (default), cuda (one GPU, both agents on it) or auto");
  flags.add("kv-cache-mb", "MB", "each agent's KV cache (default 512)");
  flags.add("io-threads", "N",
            "cpprest's pool, shared by both agents and the load generator (default " +
                std::to_string(http::kDefaultIoThreads) + ", as serve)");
  flags.add("help", "", "show this help");
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "hotswap-migration-bench: %s\n", st.to_string().c_str());
    return 1;
  };
  if (Status st = flags.parse(argc, argv, 1); !st.ok()) return fail(st);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  if (!flags.has("model")) return fail(invalid_argument("--model is required"));
  auto max_tokens = flags.get_int("max-tokens", 96);
  auto after = flags.get_int("migrate-after", 32);
  auto reps = flags.get_int("repetitions", 3);
  auto transfer_mb = flags.get_int("transfer-mb", 256);
  auto io_threads = flags.get_int("io-threads", http::kDefaultIoThreads);
  for (const Status& st : {max_tokens.status(), after.status(), reps.status(), transfer_mb.status(), io_threads.status()})
    if (!st.ok()) return fail(st);
  if (Status st = http::set_io_threads(*io_threads); !st.ok()) return fail(st);
  if (*reps < 1 || *after < 1 || *max_tokens <= *after + 8)
    return fail(invalid_argument("need --repetitions >= 1, --migrate-after >= 1 and --max-tokens > --migrate-after + 8"));
  auto model = engine::Model::load(flags.get("model"));
  if (!model.ok()) return fail(model.status());
  engine::EngineOptions eo;
  auto kv_mb = flags.get_int("kv-cache-mb", 512);
  if (!kv_mb.ok()) return fail(kv_mb.status());
  if (*kv_mb < 1) return fail(invalid_argument("--kv-cache-mb must be >= 1"));
  eo.kv_cache_bytes = *kv_mb << 20;
  auto device = engine::resolve_device(flags.get("device", "cpu"));
  if (!device.ok()) return fail(device.status().with_context("--device"));
  eo.device = *device;
  const int64_t longest = (*model)->config().max_position_embeddings - *max_tokens - 16;
  auto context_list = flags.get_int_list("contexts", "512,2048," + std::to_string(longest), 1);
  if (!context_list.ok()) return fail(context_list.status());
  const std::vector<int64_t> contexts = *context_list;
  for (int64_t L : contexts)
    if (L < 1 || L > longest)
      return fail(invalid_argument("context " + std::to_string(L) + " is outside 1.." + std::to_string(longest) +
                                   " (the model's limit less the generated tokens)"));
  auto method_list = flags.get_list("methods", "stop-and-copy,kv,recompute");
  if (!method_list.ok()) return fail(method_list.status());
  const std::vector<std::string> methods = *method_list;
  for (const std::string& m : methods)
    if (m != "stop-and-copy" && m != "kv" && m != "recompute")
      return fail(invalid_argument("method '" + m + "' is not one of stop-and-copy, kv, recompute"));
  // A deterministic prompt of exactly L ids: the model's own encoding of generated text, cycled.
  const auto base = (*model)->tokenizer().encode(loadgen::make_prompt(7, 0, 400));
  for (int64_t L : contexts) {
    std::vector<int64_t> prompt;
    for (int64_t i = 0; i < L; ++i) prompt.push_back(base[static_cast<size_t>(i) % base.size()]);
    std::vector<int64_t> reference;
    for (const std::string& method : methods) {
      std::vector<CaseResult> runs;
      for (int64_t rep = 0; rep < *reps; ++rep) {
        auto r = run_case(*model, eo, Case{method, L}, prompt, *max_tokens, *after);
        if (!r.ok()) return fail(r.status().with_context(method + " at context " + std::to_string(L)));
        if (reference.empty()) reference = r->tokens;
        if (r->tokens != reference)
          return fail(data_loss(method + " at context " + std::to_string(L) + ": the tokens differ from the first run's"));
        runs.push_back(std::move(*r));
      }
      auto med = [&](auto field) {
        std::vector<double> v;
        for (const auto& r : runs) v.push_back(static_cast<double>(field(r)));
        return median(v);
      };
      json j = {{"kind", "downtime"},
                {"device", engine::device_name(eo.device)},
                {"method", method},
                {"context", L},
                {"repetitions", *reps},
                {"downtime_ms", med([](const CaseResult& r) { return r.downtime_ms; })},
                {"gap_before_ms", med([](const CaseResult& r) { return r.gap_before_ms; })},
                {"gap_max_ms", med([](const CaseResult& r) { return r.gap_max_ms; })},
                {"switch_ms", med([](const CaseResult& r) { return r.switch_ms; })},
                {"rounds", med([](const CaseResult& r) { return r.rounds; })},
                {"bytes", med([](const CaseResult& r) { return r.bytes; })},
                {"precopy_end", runs[runs.size() / 2].precopy_end},
                {"tokens_exact_across_runs", true}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
  if (*transfer_mb > 0) {
    const int64_t bytes = *transfer_mb << 20;
    auto tls = bench_tls_context();
    if (!tls.ok()) return fail(tls.status().with_context("TLS material"));
    std::vector<double> transport, tls_transport, raw, floor;
    for (int64_t rep = 0; rep < *reps; ++rep) {
      auto t = transport_bytes_per_s(bytes, nullptr);
      if (!t.ok()) return fail(t.status().with_context("transport throughput"));
      auto e = transport_bytes_per_s(bytes, tls->get());
      if (!e.ok()) return fail(e.status().with_context("transport throughput over TLS"));
      tls_transport.push_back(*e);
      auto l = migration::measure_tcp_loopback_bytes_per_s(static_cast<size_t>(bytes));
      if (!l.ok()) return fail(l.status().with_context("raw loopback throughput"));
      migration::LinkProbeOptions copy_and_crc;
      copy_and_crc.copy_and_checksum = true;
      auto f = migration::measure_tcp_loopback_bytes_per_s(static_cast<size_t>(bytes), copy_and_crc);
      if (!f.ok()) return fail(f.status().with_context("loopback throughput with a copy and a CRC"));
      transport.push_back(*t);
      raw.push_back(*l);
      floor.push_back(*f);
    }
    json j = {{"kind", "throughput"},
              {"bytes", bytes},
              {"repetitions", *reps},
              {"transport_bytes_per_s", median(transport)},
              {"raw_tcp_bytes_per_s", median(raw)},
              {"transport_over_raw", median(transport) / median(raw)},
              {"copy_crc_tcp_bytes_per_s", median(floor)},
              {"copy_crc_over_raw", median(floor) / median(raw)},
              {"transport_over_copy_crc", median(transport) / median(floor)},
              {"tls_transport_bytes_per_s", median(tls_transport)},
              {"tls_over_transport", median(tls_transport) / median(transport)}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace hotswap

int main(int argc, char** argv) { return hotswap::run(argc, argv); }
