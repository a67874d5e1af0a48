// `hotswap-agent serve` as a real process: the same tokens as `hotswap-agent generate`, and a
// SIGTERM that lets open streams finish before exiting 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "agent/engine/cuda_backend.h"
#include "tests/agent/migration/tls_test_util.h"
#include "tests/agent/server/agent_process.h"
#include "tests/agent/server/server_test_util.h"

namespace hotswap::agent {
namespace {

using nlohmann::json;
using testing::http_call;

using testing::AgentProcess;

std::vector<int32_t> generate_cli_tokens(const std::string& model, const std::string& prompt, int max_tokens,
                                         double temperature, int seed) {
  std::string cmd = std::string(HOTSWAP_AGENT_BIN) + " generate --model " + model + " --prompt '" + prompt +
                    "' --max-tokens " + std::to_string(max_tokens) + " --temperature " + std::to_string(temperature) +
                    " --seed " + std::to_string(seed) + " --ignore-eos --threads 1 --json";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd;
  return json::parse(out)["token_ids"].get<std::vector<int32_t>>();
}

TEST(ServeProcess, StreamedAndWholeResponsesMatchTheGenerateCommand) {
  std::string model = engine::testing::tiny_model();
  AgentProcess agent(model);
  ASSERT_TRUE(agent.wait_ready());
  const std::string prompt = "The replica moves";
  auto want = generate_cli_tokens(model, prompt, 20, 0.9, 11);
  ASSERT_EQ(want.size(), 20u);
  json body = {{"model", "tiny"},    {"prompt", prompt}, {"max_tokens", 20},
               {"temperature", 0.9}, {"seed", 11},       {"ignore_eos", true}};
  auto whole = http_call(agent.port, "POST", "/v1/completions", body.dump());
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want);
  body["stream"] = true;
  auto streamed = http_call(agent.port, "POST", "/v1/completions", body.dump());
  ASSERT_EQ(streamed.status, 200);
  EXPECT_EQ(testing::stream_tokens(streamed.body), want);
}

TEST(ServeProcess, ASlowerCardStretchesEveryPassReportsItsSpeedAndChangesNoToken) {
  // As the dev cluster starts it on a card a quarter as fast as the fastest class.
  std::string model = engine::testing::tiny_model();
  AgentProcess agent(model, {}, {{"HOTSWAP_GPU_SPEED_FACTOR", "0.5"}, {"HOTSWAP_GPU_SPEED_REFERENCE", "2"}});
  ASSERT_TRUE(agent.wait_ready());
  const std::string prompt = "A slower card";
  auto want = generate_cli_tokens(model, prompt, 16, 0.0, 3);
  json body = {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}, {"ignore_eos", true}};
  auto whole = http_call(agent.port, "POST", "/v1/completions", body.dump());
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want);

  auto health = http_call(agent.port, "GET", "/healthz");
  ASSERT_EQ(health.status, 200);
  EXPECT_EQ(json::parse(health.body)["speed_factor"], 0.5);
  auto metrics = http_call(agent.port, "GET", "/metrics");
  EXPECT_NE(metrics.body.find("\nhotswap_gpu_speed_factor 0.5"), std::string::npos) << metrics.body;
  auto status = http_call(agent.port, "GET", "/control/v1/status", "",
                          {{"Authorization", std::string("Bearer ") + testing::kControlToken}});
  ASSERT_EQ(status.status, 200) << status.body;
  const json eng = json::parse(status.body)["engine"];
  EXPECT_EQ(eng["speed"], 0.25);
  EXPECT_GT(eng["steps_total"].get<int64_t>(), 0);
  // Each pass was followed by a pause of at least 3x its time.
  EXPECT_GE(eng["throttle_seconds_total"].get<double>(), 3 * eng["forward_seconds_total"].get<double>() * 0.999)
      << eng.dump();
}

// A bad start: flags and environment, and what the agent's log must say before it exits 2.
struct BadStart {
  std::vector<std::string> flags;
  std::vector<std::pair<std::string, std::string>> env;
  std::string message;
};

void expect_each_exits_two_naming_it(const std::string& model, const std::string& dir,
                                     const std::vector<BadStart>& cases) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string log = dir + "/case-" + std::to_string(i) + ".log";
    AgentProcess agent(model, cases[i].flags, cases[i].env, log);
    EXPECT_EQ(agent.wait_exit(std::chrono::seconds(20)), 2) << cases[i].message;
    std::stringstream text;
    text << std::ifstream(log).rdbuf();
    EXPECT_NE(text.str().find(cases[i].message), std::string::npos) << text.str();
  }
}

TEST(ServeProcess, BadSpeedFactorsAreNamedAndExitTwo) {
  std::string model = engine::testing::tiny_model();
  std::string dir = engine::testing::temp_dir("serve-speed");
  const std::vector<BadStart> cases = {
      {{"--speed-factor", "0"}, {}, "--speed-factor = '0' is not a positive number"},
      {{"--speed-reference", "fast"}, {}, "--speed-reference = 'fast' is not a positive number"},
      {{}, {{"HOTSWAP_GPU_SPEED_FACTOR", "-1"}}, "$HOTSWAP_GPU_SPEED_FACTOR = '-1' is not a positive number"},
      {{"--speed-factor", "3", "--speed-reference", "2"}, {}, "cannot run faster than itself"},
  };
  expect_each_exits_two_naming_it(model, dir, cases);
}

TEST(ServeProcess, BadConnectionLimitsAreNamedAndExitTwo) {
  std::string model = engine::testing::tiny_model();
  std::string dir = engine::testing::temp_dir("serve-limits");
  const std::vector<BadStart> cases = {
      {{"--max-connections", "0"}, {}, "--max-connections must be in 1..1048576, got 0"},
      {{"--max-header-bytes", "many"}, {}, "--max-header-bytes"},
      {{"--idle-timeout-s", "-5"}, {}, "--idle-timeout-s must be in 1..86400, got -5"},
      {{"--header-timeout-s", "100000"}, {}, "--header-timeout-s must be in 1..86400, got 100000"},
      {{"--migration-ports", "9200-9100"}, {}, "--migration-ports '9200-9100': the range is empty"},
      {{"--migration-ports", "9100-70000"}, {}, "--migration-ports '9100-70000': not a port or a range of ports"},
      {{"--migration-ports", "many"}, {}, "--migration-ports 'many': not a port"},
      {{"--io-threads", "1"}, {}, "--io-threads must be in 2..256, got 1"},
      {{"--io-threads", "4096"}, {}, "--io-threads must be in 2..256, got 4096"},
  };
  expect_each_exits_two_naming_it(model, dir, cases);
}

size_t thread_count(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) ++n;
  return n;
}

TEST(ServeProcess, IoThreadsSizeCpprestsPool) {
  // The same agent with 2 and with 9 I/O threads, once ready and idle: 7 threads apart, and
  // both serve. (cpprest's own default would be 40.)
  std::string model = engine::testing::tiny_model();
  std::map<int, size_t> threads;
  for (int io : {2, 9}) {
    AgentProcess agent(model, {"--io-threads", std::to_string(io)});
    ASSERT_TRUE(agent.wait_ready()) << io;
    json body = {{"model", "tiny"}, {"prompt", "a pool"}, {"max_tokens", 4}, {"stream", true}};
    auto streamed = http_call(agent.port, "POST", "/v1/completions", body.dump());
    ASSERT_EQ(streamed.status, 200) << io;
    EXPECT_EQ(testing::stream_tokens(streamed.body).size(), 4u) << io;
    threads[io] = thread_count(agent.pid);
  }
  EXPECT_EQ(threads[9] - threads[2], 7u) << threads[2] << " threads with 2, " << threads[9] << " with 9";
}

TEST(ServeProcess, BadDeviceChoicesAreNamedAndAMissingGpuExitsOne) {
  std::string model = engine::testing::tiny_model();
  std::string dir = engine::testing::temp_dir("serve-device");
  struct Case {
    std::vector<std::string> flags;
    int exit_code;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"--device", "tpu"}, 2, "flag --device = 'tpu' is not one of cpu, cuda, auto"},
      {{"--gpu", "1"}, 2, "flag --gpu needs --device cuda"},
      {{"--device", "cuda", "--gpu", "-1"}, 2, "flag --gpu = -1 is outside [0, 1023]"},
  };
  // Where there is no GPU (CI), --device cuda fails at start, saying why; with one it serves.
  if (engine::cuda_device_count() == 0)
    cases.push_back({{"--device", "cuda"},
                     1,
                     engine::cuda_backend_built() ? "no CUDA device is visible" : "built without the CUDA backend"});
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string log = dir + "/case-" + std::to_string(i) + ".log";
    AgentProcess agent(model, cases[i].flags, {}, log);
    EXPECT_EQ(agent.wait_exit(std::chrono::seconds(20)), cases[i].exit_code) << cases[i].message;
    std::stringstream text;
    text << std::ifstream(log).rdbuf();
    EXPECT_NE(text.str().find(cases[i].message), std::string::npos) << text.str();
  }
}

TEST(ServeProcess, AutoRunsOnTheCpuWithoutAGpuAndHealthzSaysWhere) {
  if (engine::cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: --device auto picks it";
  AgentProcess agent(engine::testing::tiny_model(), {"--device", "auto"});
  ASSERT_TRUE(agent.wait_ready());
  const auto health = http_call(agent.port, "GET", "/healthz");
  ASSERT_EQ(health.status, 200);
  EXPECT_EQ(json::parse(health.body)["device"], "cpu") << health.body;
}

TEST(ServeProcess, TheControlTokenCanComeFromTheEnvironment) {
  // As a Pod gets it from a Secret through secretKeyRef.
  std::string model = engine::testing::tiny_model();
  const std::string token = "env-token-0123456789abcdef";
  {
    AgentProcess agent(model, {}, {{"HOTSWAP_CONTROL_TOKEN", token + "\n"}});
    ASSERT_TRUE(agent.wait_ready());
    EXPECT_EQ(http_call(agent.port, "GET", "/control/v1/status", "", {{"Authorization", "Bearer " + token}}).status, 200);
    EXPECT_EQ(http_call(agent.port, "GET", "/control/v1/status", "",
                        {{"Authorization", std::string("Bearer ") + testing::kControlToken}})
                  .status,
              403);
  }
  const std::string log = engine::testing::temp_dir("serve-env-token") + "/agent.log";
  AgentProcess agent(model, {}, {{"HOTSWAP_CONTROL_TOKEN", "short"}}, log);
  EXPECT_EQ(agent.wait_exit(std::chrono::seconds(20)), 2);
  std::stringstream text;
  text << std::ifstream(log).rdbuf();
  EXPECT_NE(text.str().find("$HOTSWAP_CONTROL_TOKEN: the token must have at least 16 characters"), std::string::npos)
      << text.str();
}

// The migration TLS material, from a mounted Secret's directory or from the environment (as the
// operator's Pods get it): the agent then offers tls:// endpoints; and material that is missing,
// partial or does not fit is named and exits 2 before the agent serves.
TEST(ServeProcess, MigrationTlsMaterialComesFromADirectoryOrTheEnvironmentAndBadMaterialExitsTwo) {
  const std::string model = engine::testing::tiny_model();
  const std::string dir = engine::testing::temp_dir("serve-tls");
  const migration::TlsMaterial m = migration::testing::deployment_material("serve");
  const migration::TlsMaterial other = migration::testing::deployment_material("other");
  std::ofstream(dir + "/ca.crt") << m.ca_pem;
  std::ofstream(dir + "/tls.crt") << m.cert_pem;
  std::ofstream(dir + "/tls.key") << m.key_pem;
  const std::map<std::string, std::string> auth = {{"Authorization", std::string("Bearer ") + testing::kControlToken}};
  const std::vector<std::pair<std::string, std::string>> env = {
      {"HOTSWAP_MIGRATION_TLS_CA", m.ca_pem}, {"HOTSWAP_MIGRATION_TLS_CERT", m.cert_pem}, {"HOTSWAP_MIGRATION_TLS_KEY", m.key_pem}};
  for (int from_env = 0; from_env < 2; ++from_env) {
    AgentProcess agent(model, from_env ? std::vector<std::string>{} : std::vector<std::string>{"--migration-tls-dir", dir},
                       from_env ? env : std::vector<std::pair<std::string, std::string>>{});
    ASSERT_TRUE(agent.wait_ready()) << (from_env ? "env" : "dir");
    auto prep = http_call(agent.port, "POST", "/control/v1/migrations", json{{"id", "m"}}.dump(), auth);
    ASSERT_EQ(prep.status, 200) << prep.body;
    EXPECT_EQ(json::parse(prep.body)["data_endpoint"].get<std::string>().rfind("tls://", 0), 0u) << prep.body;
  }
  {
    // Neither material nor --allow-plaintext-migration: it serves, and refuses migrations saying why.
    AgentProcess agent(model);
    ASSERT_TRUE(agent.wait_ready());
    auto prep = http_call(agent.port, "POST", "/control/v1/migrations", json{{"id", "m"}}.dump(), auth);
    EXPECT_EQ(prep.status, 409) << prep.body;
    EXPECT_NE(prep.body.find("--allow-plaintext-migration"), std::string::npos) << prep.body;
  }
  const std::vector<BadStart> cases = {
      {{"--migration-tls-dir", dir + "/missing"}, {}, "--migration-tls-dir: the migration TLS CA file '" + dir + "/missing/ca.crt' cannot be read"},
      {{}, {{"HOTSWAP_MIGRATION_TLS_CA", m.ca_pem}}, "$HOTSWAP_MIGRATION_TLS_CA, _CERT and _KEY must be set together (1 of 3 are)"},
      {{}, {{"HOTSWAP_MIGRATION_TLS_CA", m.ca_pem}, {"HOTSWAP_MIGRATION_TLS_CERT", m.cert_pem}, {"HOTSWAP_MIGRATION_TLS_KEY", other.key_pem}},
       "the migration TLS key does not belong to its certificate"},
      {{}, {{"HOTSWAP_MIGRATION_TLS_CA", other.ca_pem}, {"HOTSWAP_MIGRATION_TLS_CERT", m.cert_pem}, {"HOTSWAP_MIGRATION_TLS_KEY", m.key_pem}},
       "does not verify against the CA"},
  };
  expect_each_exits_two_naming_it(model, dir, cases);
}

TEST(ServeProcess, SigtermLetsOpenStreamsFinishThenExitsZero) {
  std::string model = engine::testing::tiny_model();
  AgentProcess agent(model);
  ASSERT_TRUE(agent.wait_ready());
  const int n = 3, tokens = 300;
  std::vector<std::unique_ptr<testing::HttpConnection>> streams;
  for (int i = 0; i < n; ++i) {
    streams.push_back(std::make_unique<testing::HttpConnection>(agent.port));
    json body = {{"model", "tiny"},      {"prompt", "stream " + std::to_string(i)},
                 {"max_tokens", tokens}, {"temperature", 0},
                 {"ignore_eos", true},   {"stream", true}};
    ASSERT_TRUE(streams.back()->send_request("POST", "/v1/completions", body.dump()));
  }
  std::vector<std::string> bodies(n);
  for (int i = 0; i < n; ++i) {
    testing::HttpResponse head;
    ASSERT_TRUE(streams[i]->read_head(&head));
    ASSERT_EQ(head.status, 200);
    auto first = streams[i]->read_body_piece();
    ASSERT_TRUE(first.has_value());
    bodies[i] = *first;
  }
  ASSERT_EQ(kill(agent.pid, SIGTERM), 0);
  // Once the signal is taken, readiness fails and new work is refused while the old finishes.
  int ready = 200;
  for (int i = 0; i < 200 && ready == 200; ++i) {
    ready = http_call(agent.port, "GET", "/readyz").status;
    if (ready == 200) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(ready, 503);
  auto refused = http_call(agent.port, "POST", "/v1/completions", R"({"model": "tiny", "prompt": "late"})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  for (int i = 0; i < n; ++i) {
    bodies[i] += streams[i]->read_all_body();
    EXPECT_EQ(testing::stream_tokens(bodies[i]).size(), static_cast<size_t>(tokens)) << "stream " << i;
  }
  EXPECT_EQ(agent.wait_exit(std::chrono::seconds(20)), 0);
}

}  // namespace
}  // namespace hotswap::agent
