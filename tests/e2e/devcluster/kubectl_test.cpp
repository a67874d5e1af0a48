// The installed kubectl (v1.32) against the dev cluster's API server: apply, get (tables, -o wide,
// -w, jsonpath, --raw watches), patch (merge, JSON, the status subresource), delete with
// finalizers, cordon, drain with a PodDisruptionBudget, api-resources. Each test starts an
// in-process ApiServer and a kubeconfig for it in a temporary folder; every kubectl call is a
// child process with that kubeconfig, a kubectl cache of the test's own (--cache-dir: discovery
// cached by one test never reaches another), stdout and stderr captured together, and a deadline
// after which it is killed. Every test skips, saying so loudly, where kubectl is not on PATH.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e/devcluster/nodes/local_process.h"
#include "tests/e2e/devcluster/api_test_util.h"

extern char** environ;

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using testing::json;

constexpr auto kKubectlTimeout = 20s;  // any one kubectl call; they take ~0.1 s

// The first executable called `name` in a folder of PATH, or "".
std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && std::filesystem::is_regular_file(candidate)) return candidate;
  }
  return "";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string w;
  while (ss >> w) out.push_back(w);
  return out;
}

using Words = std::vector<std::string>;

// The words of every line of a kubectl table whose first column is `name`.
std::vector<Words> rows_named(const std::string& table, const std::string& name) {
  std::vector<Words> out;
  for (const auto& line : lines_of(table)) {
    Words w = words_of(line);
    if (!w.empty() && w[0] == name) out.push_back(std::move(w));
  }
  return out;
}
// The first such row, or no words.
Words row_named(const std::string& table, const std::string& name) {
  auto rows = rows_named(table, name);
  return rows.empty() ? Words{} : rows.front();
}
// The header line's words (the line that starts with NAME).
Words header_of(const std::string& table) {
  return row_named(table, "NAME");
}
// Column `i` (by words) of the row `name`, or "" when there is none.
std::string cell(const std::string& table, const std::string& name, size_t i) {
  const Words w = row_named(table, name);
  return i < w.size() ? w[i] : "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(100ms);
  }
}

// A child process (LocalProcess: its own process group, stdin from /dev/null, stdout and stderr
// into one file, no other descriptor of this process). Destroying it kills the group and reaps it.
class ChildProcess {
 public:
  static std::unique_ptr<ChildProcess> spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                             const std::string& output_path, std::string* error) {
    std::map<std::string, std::string> vars;
    for (const auto& kv : env) {
      const auto eq = kv.find('=');
      if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    std::error_code ec;
    std::filesystem::remove(output_path, ec);  // a fresh file per call
    auto p = LocalProcess::start(argv, vars, output_path);
    if (!p.ok()) {
      *error = p.status().to_string();
      return nullptr;
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(std::move(*p)));
  }

  // The exit status (128 + the signal when a signal ended it) once the process has ended;
  // nullopt while it still runs at the end of `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto e = process_.poll()) return e->exit_code;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(5ms);
    }
  }

  void kill_and_reap() { (void)process_.stop(std::chrono::milliseconds(0)); }

 private:
  explicit ChildProcess(LocalProcess p) : process_(std::move(p)) {}
  LocalProcess process_;
};

struct KubectlRun {
  std::string command;  // "kubectl get pods", for messages
  int exit_code = -1;   // -1: did not start or was killed at its deadline
  std::string output;   // stdout and stderr together

  bool ok() const { return exit_code == 0; }
  std::string describe() const { return command + " -> exit " + std::to_string(exit_code) + "\n" + output; }
};

const char* kWidgetCrd = R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              phase: {type: string}
)";

std::string widget(const std::string& name, const std::string& spec) {
  return "apiVersion: example.io/v1\nkind: Widget\nmetadata:\n  name: " + name + "\nspec: " + spec + "\n";
}

const char* kReadyNode = R"(apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels: {kubernetes.io/hostname: node-1}
status:
  conditions:
  - {type: Ready, status: "True", reason: KubeletReady, message: kubelet is posting ready status}
)";

std::string pod_on_node_1(const std::string& name) {
  return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name +
         "\n  labels: {app: web}\nspec:\n  nodeName: node-1\n  containers: [{name: app, image: local/agent}]\n";
}

class KubectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubectl_ = find_on_path("kubectl");
    if (kubectl_.empty()) {
      std::fprintf(stderr,
                   "\n*** kubectl is MISSING: it is not on PATH, so the kubectl tests are SKIPPED. "
                   "scripts/install-deps.sh installs it. ***\n\n");
      GTEST_SKIP() << "kubectl is MISSING (not on PATH): the kubectl tests are skipped; scripts/install-deps.sh "
                      "installs it";
    }
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (std::filesystem::temp_directory_path() /
            ("hotswap-kubectl-" + std::to_string(::getpid()) + "-" + info->name()))
               .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    // Server-side field validation, which `kubectl apply` finds through OpenAPI v3, came in 1.26;
    // an older kubectl (Debian's kubernetes-client is 1.20) would need --validate=false.
    const int minor = kubectl_minor_version();
    if (minor < 26) {
      std::fprintf(stderr, "\n*** kubectl 1.%d is too OLD (the tests need 1.26 or later): kubectl tests SKIPPED ***\n\n",
                   minor);
      GTEST_SKIP() << "kubectl 1." << minor << " is older than 1.26";
    }
    start_server({});
  }

  // The client's minor version (cached), or -1 when kubectl does not say.
  int kubectl_minor_version() {
    static int minor = -2;
    if (minor != -2) return minor;
    auto r = kubectl({"version", "--client", "-o", "json"});
    const auto j = nlohmann::json::parse(r.output, nullptr, false);
    const std::string text = j.is_object() ? j.value("/clientVersion/minor"_json_pointer, std::string()) : "";
    minor = text.empty() ? -1 : std::atoi(text.c_str());
    return minor;
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  void start_server(ApiServerOptions o) {
    server_.reset();
    auto s = ApiServer::start(o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(*s);
    kubeconfig_ = dir_ + "/kubeconfig";
    auto st = server_->write_kubeconfig(kubeconfig_);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }

  // kubectl with this test's kubeconfig and cache, and the environment it sees: this process's,
  // with KUBECONFIG and HOME pointing into the test's folder.
  std::vector<std::string> argv_of(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {kubectl_, "--kubeconfig", kubeconfig_, "--cache-dir", dir_ + "/cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::vector<std::string> env() const {
    std::vector<std::string> out;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      if (kv.rfind("KUBECONFIG=", 0) == 0 || kv.rfind("HOME=", 0) == 0) continue;
      out.push_back(kv);
    }
    out.push_back("KUBECONFIG=" + kubeconfig_);
    out.push_back("HOME=" + dir_);
    return out;
  }

  KubectlRun kubectl(const std::vector<std::string>& args, std::chrono::milliseconds timeout = kKubectlTimeout) {
    KubectlRun run;
    run.command = "kubectl";
    for (const auto& a : args) run.command += " " + a;
    const std::string out = dir_ + "/out-" + std::to_string(++calls_) + ".txt";
    std::string error;
    auto child = ChildProcess::spawn(argv_of(args), env(), out, &error);
    if (!child) {
      run.output = error;
      return run;
    }
    auto code = child->wait_for(timeout);
    if (!code) child->kill_and_reap();
    run.output = read_file(out);
    if (code) {
      run.exit_code = *code;
    } else {
      run.output += "\n[killed: still running after " + std::to_string(timeout.count()) + " ms]";
    }
    return run;
  }

  // kubectl running in the background, its output going to `output_path`.
  std::unique_ptr<ChildProcess> kubectl_in_background(const std::vector<std::string>& args,
                                                      const std::string& output_path) {
    std::string error;
    auto child = ChildProcess::spawn(argv_of(args), env(), output_path, &error);
    EXPECT_TRUE(child) << error;
    return child;
  }

  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::trunc) << text;
    return path;
  }
  KubectlRun apply(const std::string& name, const std::string& yaml) {
    return kubectl({"apply", "-f", write(name, yaml)});
  }

  // `kubectl get <what> -o jsonpath=<expr>`'s output; a failed call fails the test.
  std::string jsonpath(const std::vector<std::string>& what, const std::string& expr) {
    std::vector<std::string> args = {"get"};
    args.insert(args.end(), what.begin(), what.end());
    args.push_back("-o");
    args.push_back("jsonpath=" + expr);
    auto r = kubectl(args);
    EXPECT_TRUE(r.ok()) << r.describe();
    return r.output;
  }

  void install_widget_crd() {
    auto crd = apply("crd.yaml", kWidgetCrd);
    ASSERT_TRUE(crd.ok()) << crd.describe();
    ASSERT_TRUE(contains(crd.output, "customresourcedefinition.apiextensions.k8s.io/widgets.example.io created"))
        << crd.output;
    ASSERT_TRUE(eventually(
        [&] {
          return jsonpath({"crd", "widgets.example.io"}, R"({.status.conditions[?(@.type=="Established")].status})") ==
                 "True";
        },
        10s))
        << "the CRD never became Established";
  }

  std::string kubectl_;
  std::string dir_;
  std::string kubeconfig_;
  std::unique_ptr<ApiServer> server_;
  int calls_ = 0;
};

TEST_F(KubectlTest, ApplyOfACrdThenAResourcePrintsItsColumnsAndASecondApplyConfiguresIt) {
  ASSERT_NO_FATAL_FAILURE(install_widget_crd());
  auto established = kubectl({"wait", "--for=condition=Established", "crd/widgets.example.io", "--timeout=10s"});
  ASSERT_TRUE(established.ok()) << established.describe();
  EXPECT_TRUE(
      contains(established.output, "customresourcedefinition.apiextensions.k8s.io/widgets.example.io condition met"))
      << established.output;

  auto created = apply("w1.yaml", widget("w1", "{size: 3}"));
  ASSERT_TRUE(created.ok()) << created.describe();
  EXPECT_TRUE(contains(created.output, "widget.example.io/w1 created")) << created.output;
  auto table = kubectl({"get", "widgets"});
  ASSERT_TRUE(table.ok()) << table.describe();
  // The CRD's printer columns after NAME (no AGE: a CRD with columns of its own gets only those).
  EXPECT_EQ(header_of(table.output), (Words{"NAME", "SIZE", "PHASE"})) << table.output;
  EXPECT_EQ(row_named(table.output, "w1"), (Words{"w1", "3"})) << table.output;  // no phase yet
  EXPECT_EQ(jsonpath({"wd", "w1"}, "{.spec.color}"), "red");                     // the schema's default

  auto configured = apply("w1.yaml", widget("w1", "{size: 5}"));
  ASSERT_TRUE(configured.ok()) << configured.describe();
  EXPECT_TRUE(contains(configured.output, "widget.example.io/w1 configured")) << configured.output;
  EXPECT_EQ(row_named(kubectl({"get", "widgets"}).output, "w1"), (Words{"w1", "5"}));
  EXPECT_EQ(jsonpath({"widget", "w1"}, "{.metadata.generation}"), "2");
  auto unchanged = apply("w1.yaml", widget("w1", "{size: 5}"));
  EXPECT_TRUE(contains(unchanged.output, "widget.example.io/w1 unchanged")) << unchanged.describe();
}

TEST_F(KubectlTest, ApplyOfAnInvalidOrUnknownFieldPrintsTheServersRefusal) {
  ASSERT_NO_FATAL_FAILURE(install_widget_crd());
  auto invalid = apply("w2.yaml", widget("w2", "{size: 30}"));
  EXPECT_NE(invalid.exit_code, 0) << invalid.describe();
  EXPECT_TRUE(contains(invalid.output,
                       "The Widget \"w2\" is invalid: spec.size: Invalid value: 30: spec.size in body should be less "
                       "than or equal to 10"))
      << invalid.output;
  auto missing = kubectl({"get", "widget", "w2"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(contains(missing.output, "widgets.example.io \"w2\" not found")) << missing.output;

  // kubectl apply validates strictly by default (?fieldValidation=Strict).
  auto unknown = apply("w3.yaml", widget("w3", "{size: 3, bogus: true}"));
  EXPECT_NE(unknown.exit_code, 0) << unknown.describe();
  EXPECT_TRUE(contains(unknown.output, "Error from server (BadRequest): error when creating")) << unknown.output;
  EXPECT_TRUE(contains(unknown.output, "strict decoding error: unknown field \"spec.bogus\"")) << unknown.output;
  EXPECT_NE(kubectl({"get", "widget", "w3"}).exit_code, 0);
  // --validate=warn: created, pruned, and the server's Warning header printed.
  auto warned = kubectl({"apply", "--validate=warn", "-f", dir_ + "/w3.yaml"});
  ASSERT_TRUE(warned.ok()) << warned.describe();
  EXPECT_TRUE(contains(warned.output, "Warning: unknown field \"spec.bogus\"")) << warned.output;
  EXPECT_TRUE(contains(warned.output, "widget.example.io/w3 created")) << warned.output;
  EXPECT_EQ(jsonpath({"widget", "w3"}, "{.spec}"), R"({"color":"red","size":3})");
}

TEST_F(KubectlTest, GetWatchPrintsAMergePatchedValueOnALaterLine) {
  ASSERT_NO_FATAL_FAILURE(install_widget_crd());
  ASSERT_TRUE(apply("w1.yaml", widget("w1", "{size: 3}")).ok());
  const std::string watch_out = dir_ + "/watch.txt";
  auto watch = kubectl_in_background({"get", "widgets", "-w"}, watch_out);
  ASSERT_TRUE(watch);
  // The list first; the watch starts from its version, so nothing after it is missed.
  ASSERT_TRUE(eventually([&] { return !rows_named(read_file(watch_out), "w1").empty(); }, 10s)) << read_file(watch_out);
  auto patched = kubectl({"patch", "widget", "w1", "--type=merge", "-p", R"({"spec":{"size":7}})"});
  ASSERT_TRUE(patched.ok()) << patched.describe();
  EXPECT_TRUE(contains(patched.output, "widget.example.io/w1 patched")) << patched.output;
  EXPECT_TRUE(eventually([&] { return rows_named(read_file(watch_out), "w1").size() >= 2; }, 10s))
      << read_file(watch_out);
  watch->kill_and_reap();
  const std::string out = read_file(watch_out);
  const auto rows = rows_named(out, "w1");
  ASSERT_GE(rows.size(), 2u) << out;
  EXPECT_EQ(header_of(out), (Words{"NAME", "SIZE", "PHASE"})) << out;
  EXPECT_EQ(rows.front(), (Words{"w1", "3"})) << out;
  EXPECT_EQ(rows.back(), (Words{"w1", "7"})) << out;
}

TEST_F(KubectlTest, StatusChangesThroughTheStatusSubresourceOnly) {
  ASSERT_NO_FATAL_FAILURE(install_widget_crd());
  ASSERT_TRUE(apply("w1.yaml", widget("w1", "{size: 3}")).ok());
  auto status = kubectl(
      {"patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", R"({"status":{"phase":"Ready"}})"});
  ASSERT_TRUE(status.ok()) << status.describe();
  EXPECT_TRUE(contains(status.output, "widget.example.io/w1 patched")) << status.output;
  EXPECT_EQ(row_named(kubectl({"get", "widgets"}).output, "w1"), (Words{"w1", "3", "Ready"}));
  // Through the main resource the status part of a patch is dropped: nothing changes.
  auto main = kubectl({"patch", "widget", "w1", "--type=merge", "-p", R"({"status":{"phase":"Broken"}})"});
  ASSERT_TRUE(main.ok()) << main.describe();
  EXPECT_TRUE(contains(main.output, "widget.example.io/w1 patched (no change)")) << main.output;
  EXPECT_EQ(row_named(kubectl({"get", "widgets"}).output, "w1"), (Words{"w1", "3", "Ready"}));
  EXPECT_EQ(jsonpath({"widget", "w1"}, "{.metadata.generation}"), "1");
}

TEST_F(KubectlTest, CordonAndUncordonShowInTheNodesStatusColumn) {
  auto created = apply("node.yaml", kReadyNode);
  ASSERT_TRUE(created.ok()) << created.describe();
  EXPECT_TRUE(contains(created.output, "node/node-1 created")) << created.output;
  auto nodes = kubectl({"get", "nodes"});
  ASSERT_TRUE(nodes.ok()) << nodes.describe();
  EXPECT_EQ(header_of(nodes.output), (Words{"NAME", "STATUS", "ROLES", "AGE", "VERSION"})) << nodes.output;
  EXPECT_EQ(cell(nodes.output, "node-1", 1), "Ready") << nodes.output;

  auto cordon = kubectl({"cordon", "node-1"});
  ASSERT_TRUE(cordon.ok()) << cordon.describe();
  EXPECT_TRUE(contains(cordon.output, "node/node-1 cordoned")) << cordon.output;
  nodes = kubectl({"get", "nodes"});
  EXPECT_EQ(cell(nodes.output, "node-1", 1), "Ready,SchedulingDisabled") << nodes.output;
  EXPECT_EQ(jsonpath({"node", "node-1"}, "{.spec.unschedulable}"), "true");

  auto uncordon = kubectl({"uncordon", "node-1"});
  ASSERT_TRUE(uncordon.ok()) << uncordon.describe();
  EXPECT_TRUE(contains(uncordon.output, "node/node-1 uncordoned")) << uncordon.output;
  nodes = kubectl({"get", "nodes"});
  EXPECT_EQ(cell(nodes.output, "node-1", 1), "Ready") << nodes.output;
  EXPECT_EQ(jsonpath({"node", "node-1"}, "{.spec.unschedulable}"), "");
}

TEST_F(KubectlTest, DrainIsBlockedByADisruptionBudgetAndEvictsOnceItIsGone) {
  ASSERT_TRUE(apply("node.yaml", kReadyNode).ok());
  ASSERT_TRUE(apply("p.yaml", pod_on_node_1("p")).ok());
  auto pdb = apply("pdb.yaml", R"(apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web-pdb}
spec:
  maxUnavailable: 0
  selector: {matchLabels: {app: web}}
)");
  ASSERT_TRUE(pdb.ok()) << pdb.describe();
  auto ready = kubectl({"patch", "pod", "p", "--subresource=status", "--type=merge", "-p",
                        R"({"status":{"conditions":[{"type":"Ready","status":"True"}]}})"});
  ASSERT_TRUE(ready.ok()) << ready.describe();
  EXPECT_TRUE(eventually(
      [&] {
        return jsonpath({"pdb", "web-pdb"}, "{.status.currentHealthy}/{.status.disruptionsAllowed}") == "1/0";
      },
      5s));

  // Blocked: the eviction is refused (429) and kubectl fails at its timeout. (It retries a refused
  // eviction after 5 s, so this call takes 5 s whatever --timeout says.)
  auto blocked = kubectl({"drain", "node-1", "--force", "--timeout=2s"});
  EXPECT_NE(blocked.exit_code, 0) << blocked.describe();
  EXPECT_TRUE(contains(blocked.output, "node/node-1 cordoned")) << blocked.output;
  EXPECT_TRUE(contains(blocked.output, "Cannot evict pod as it would violate the pod's disruption budget."))
      << blocked.output;
  EXPECT_TRUE(contains(blocked.output, "global timeout reached: 2s")) << blocked.output;
  EXPECT_EQ(jsonpath({"pod", "p"}, "{.metadata.name} {.metadata.deletionTimestamp}"), "p ");
  EXPECT_EQ(cell(kubectl({"get", "nodes"}).output, "node-1", 1), "Ready,SchedulingDisabled");

  // Without the budget the eviction goes through: the Pod, bound to a node, terminates
  // gracefully (30 s) and waits for its kubelet, which the dev cluster does not run here, so
  // kubectl's wait for the deletion reaches its timeout.
  auto deleted = kubectl({"delete", "pdb", "web-pdb"});
  ASSERT_TRUE(deleted.ok()) << deleted.describe();
  EXPECT_TRUE(contains(deleted.output, "poddisruptionbudget.policy \"web-pdb\" deleted")) << deleted.output;
  auto evicting = kubectl({"drain", "node-1", "--force", "--timeout=2s"});
  EXPECT_NE(evicting.exit_code, 0) << evicting.describe();
  EXPECT_TRUE(contains(evicting.output, "evicting pod default/p")) << evicting.output;
  EXPECT_TRUE(contains(evicting.output, "error when waiting for pod \"p\" in namespace \"default\" to terminate"))
      << evicting.output;
  EXPECT_FALSE(contains(evicting.output, "disruption budget")) << evicting.output;
  const std::string deletion =
      jsonpath({"pod", "p"}, "{.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}");
  EXPECT_EQ(words_of(deletion).size(), 2u) << deletion;
  EXPECT_TRUE(deletion.size() > 3 && deletion.substr(deletion.size() - 3) == " 30") << deletion;
  EXPECT_EQ(cell(kubectl({"get", "pods"}).output, "p", 2), "Terminating");
  auto forced = kubectl({"delete", "pod", "p", "--grace-period=0", "--force"});
  ASSERT_TRUE(forced.ok()) << forced.describe();
  EXPECT_TRUE(contains(forced.output, "pod \"p\" force deleted")) << forced.output;
  EXPECT_TRUE(contains(kubectl({"get", "pod", "p"}).output, "pods \"p\" not found"));

  // With --grace-period=0 the eviction deletes at once and the drain completes.
  ASSERT_TRUE(apply("q.yaml", pod_on_node_1("q")).ok());
  auto drained = kubectl({"drain", "node-1", "--force", "--grace-period=0", "--timeout=10s"});
  ASSERT_TRUE(drained.ok()) << drained.describe();
  EXPECT_TRUE(contains(drained.output, "pod/q evicted")) << drained.output;
  EXPECT_TRUE(contains(drained.output, "node/node-1 drained")) << drained.output;
  EXPECT_TRUE(contains(kubectl({"get", "pod", "q"}).output, "pods \"q\" not found"));
}

TEST_F(KubectlTest, DeleteOfAnObjectWithAFinalizerWaitsUntilAJsonPatchRemovesIt) {
  auto created = apply("held.yaml", R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  finalizers: [example.io/hold]
data: {k: v}
)");
  ASSERT_TRUE(created.ok()) << created.describe();
  auto del = kubectl({"delete", "configmap", "held", "--wait=false"});
  ASSERT_TRUE(del.ok()) << del.describe();
  EXPECT_TRUE(contains(del.output, "configmap \"held\" deleted")) << del.output;
  const std::string meta = jsonpath({"configmap", "held"}, "{.metadata.finalizers[0]} {.metadata.deletionTimestamp}");
  const Words w = words_of(meta);
  ASSERT_EQ(w.size(), 2u) << meta;
  EXPECT_EQ(w[0], "example.io/hold");
  EXPECT_EQ(w[1].size(), 20u) << w[1];  // 2026-12-01T20:00:00Z

  auto patched = kubectl(
      {"patch", "configmap", "held", "--type=json", "-p", R"([{"op":"remove","path":"/metadata/finalizers"}])"});
  ASSERT_TRUE(patched.ok()) << patched.describe();
  EXPECT_TRUE(contains(patched.output, "configmap/held patched")) << patched.output;
  auto gone = kubectl({"get", "configmap", "held"});
  EXPECT_NE(gone.exit_code, 0) << gone.describe();
  EXPECT_TRUE(contains(gone.output, "Error from server (NotFound): configmaps \"held\" not found")) << gone.output;
}

TEST_F(KubectlTest, GetAndApiResourcesPrintTables) {
  auto none = kubectl({"get", "pods"});
  ASSERT_TRUE(none.ok()) << none.describe();
  EXPECT_TRUE(contains(none.output, "No resources found in default namespace.")) << none.output;
  ASSERT_TRUE(apply("p.yaml", pod_on_node_1("p")).ok());
  auto pods = kubectl({"get", "pods"});
  ASSERT_TRUE(pods.ok()) << pods.describe();
  EXPECT_EQ(header_of(pods.output), (Words{"NAME", "READY", "STATUS", "RESTARTS", "AGE"})) << pods.output;
  const Words p = row_named(pods.output, "p");
  ASSERT_EQ(p.size(), 5u) << pods.output;
  EXPECT_EQ((Words{p[0], p[1], p[2], p[3]}), (Words{"p", "0/1", "Pending", "0"}));
  auto wide = kubectl({"get", "pods", "-o", "wide"});
  ASSERT_TRUE(wide.ok()) << wide.describe();
  EXPECT_EQ(header_of(wide.output), (Words{"NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED",
                                           "NODE", "READINESS", "GATES"}))
      << wide.output;
  const Words pw = row_named(wide.output, "p");
  ASSERT_EQ(pw.size(), 9u) << wide.output;
  EXPECT_EQ((Words{pw[5], pw[6], pw[7], pw[8]}), (Words{"<none>", "node-1", "<none>", "<none>"}));

  auto ns = kubectl({"get", "ns"});
  ASSERT_TRUE(ns.ok()) << ns.describe();
  EXPECT_EQ(header_of(ns.output), (Words{"NAME", "STATUS", "AGE"})) << ns.output;
  for (const char* name : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
    const Words r = row_named(ns.output, name);
    ASSERT_EQ(r.size(), 3u) << name << "\n" << ns.output;
    EXPECT_EQ(r[1], "Active") << ns.output;
  }

  ASSERT_NO_FATAL_FAILURE(install_widget_crd());
  auto resources = kubectl({"api-resources"});
  ASSERT_TRUE(resources.ok()) << resources.describe();
  const std::string& t = resources.output;
  EXPECT_EQ(header_of(t), (Words{"NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"})) << t;
  EXPECT_EQ(row_named(t, "pods"), (Words{"pods", "po", "v1", "true", "Pod"})) << t;
  EXPECT_EQ(row_named(t, "nodes"), (Words{"nodes", "no", "v1", "false", "Node"})) << t;
  EXPECT_EQ(row_named(t, "configmaps"), (Words{"configmaps", "cm", "v1", "true", "ConfigMap"})) << t;
  EXPECT_EQ(row_named(t, "poddisruptionbudgets"),
            (Words{"poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"}))
      << t;
  EXPECT_EQ(row_named(t, "networkpolicies"),
            (Words{"networkpolicies", "netpol", "networking.k8s.io/v1", "true", "NetworkPolicy"}))
      << t;
  EXPECT_EQ(
      row_named(t, "customresourcedefinitions"),
      (Words{"customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"}))
      << t;
  EXPECT_EQ(row_named(t, "widgets"), (Words{"widgets", "wd", "example.io/v1", "true", "Widget"})) << t;
}

// A raw watch line's type and object name.
std::pair<std::string, std::string> event_of(const std::string& line) {
  const json ev = json::parse(line, nullptr, false);
  if (!ev.is_object()) return {"not JSON", line};
  return {ev.value("type", std::string()), ev.value("/object/metadata/name"_json_pointer, std::string())};
}

TEST_F(KubectlTest, RawWatchFromAResourceVersionPrintsTheLaterEventsInOrder) {
  ASSERT_TRUE(apply("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n").ok());
  const std::string rv = jsonpath({"configmap", "a"}, "{.metadata.resourceVersion}");
  ASSERT_FALSE(rv.empty());
  ASSERT_TRUE(apply("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n").ok());
  ASSERT_TRUE(kubectl({"patch", "configmap", "a", "--type=merge", "-p", R"({"data":{"k":"v"}})"}).ok());
  ASSERT_TRUE(kubectl({"delete", "configmap", "b"}).ok());
  // timeoutSeconds=1: the server ends the stream, and kubectl with it.
  auto watch = kubectl(
      {"get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=" + rv + "&timeoutSeconds=1"});
  ASSERT_TRUE(watch.ok()) << watch.describe();
  std::vector<std::pair<std::string, std::string>> events;
  for (const auto& line : lines_of(watch.output))
    if (!line.empty()) events.push_back(event_of(line));
  EXPECT_EQ(events,
            (std::vector<std::pair<std::string, std::string>>{{"ADDED", "b"}, {"MODIFIED", "a"}, {"DELETED", "b"}}))
      << watch.output;
}

TEST_F(KubectlTest, RawWatchFromATooOldResourceVersionPrintsGone) {
  ApiServerOptions o;
  o.event_log_limit = 3;
  ASSERT_NO_FATAL_FAILURE(start_server(o));
  ASSERT_TRUE(apply("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n").ok());
  const std::string rv = jsonpath({"configmap", "a"}, "{.metadata.resourceVersion}");
  std::string more;
  for (int i = 0; i < 5; ++i)
    more += "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: n" + std::to_string(i) + "\n";
  ASSERT_TRUE(apply("more.yaml", more).ok());
  auto watch = kubectl({"get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=" + rv});
  const auto lines = lines_of(watch.output);
  ASSERT_FALSE(lines.empty()) << watch.describe();
  const json ev = json::parse(lines.front(), nullptr, false);
  ASSERT_TRUE(ev.is_object()) << watch.output;
  EXPECT_EQ(ev["type"], "ERROR") << watch.output;
  EXPECT_EQ(ev["object"]["code"], 410) << watch.output;
  EXPECT_EQ(ev["object"]["reason"], "Expired") << watch.output;
  EXPECT_EQ(watch.exit_code, 0) << watch.describe();  // the stream ends after the error
}

// The operator's CRDs (crds/) as a cluster admin installs them, with the shipped example.
TEST_F(KubectlTest, TheHotswapCrdsInstallServeTheExampleAndRefuseBadSpecsNamingTheField) {
  auto crds = kubectl({"apply", "-f", std::string(HOTSWAP_SOURCE_DIR) + "/crds"});
  ASSERT_TRUE(crds.ok()) << crds.describe();
  EXPECT_TRUE(contains(crds.output, "modeldeployments.hotswap.io created")) << crds.output;
  EXPECT_TRUE(contains(crds.output, "modelmigrations.hotswap.io created")) << crds.output;
  for (const char* crd : {"crd/modeldeployments.hotswap.io", "crd/modelmigrations.hotswap.io"}) {
    auto ready = kubectl({"wait", "--for=condition=Established", crd, "--timeout=10s"});
    ASSERT_TRUE(ready.ok()) << ready.describe();
  }
  // Every shipped example is valid as written (the namespaced one in its namespace).
  auto ns = apply("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: inference}\n");
  ASSERT_TRUE(ns.ok()) << ns.describe();
  auto example = kubectl({"apply", "-f", std::string(HOTSWAP_SOURCE_DIR) + "/examples"});
  ASSERT_TRUE(example.ok()) << example.describe();
  for (const char* made : {"modeldeployment.hotswap.io/small created", "modeldeployment.hotswap.io/llama-8b created",
                           "modeldeployment.hotswap.io/qwen-chat created", "modeldeployment.hotswap.io/mistral created",
                           "modeldeployment.hotswap.io/assistant created",
                           "modelmigration.hotswap.io/move-small-to-a100 created"})
    EXPECT_TRUE(contains(example.output, made)) << made << "\n" << example.output;
  ASSERT_TRUE(kubectl({"delete", "mm", "move-small-to-a100"}).ok());
  // The short name, the printer columns, and the schema's defaults.
  auto get = kubectl({"get", "md"});
  ASSERT_TRUE(get.ok()) << get.describe();
  for (const char* column : {"NAME", "MODEL", "REPLICAS", "READY", "MIGRATING", "AGE"})
    EXPECT_TRUE(contains(get.output, column)) << get.output;
  EXPECT_TRUE(contains(get.output, "small")) << get.output;
  EXPECT_EQ(jsonpath({"md", "small"}, "{.spec.service.type} {.spec.migration.maxConcurrentPerNode} "
                                      "{.spec.migration.triggers.scaleDown} {.spec.model.dtype}"),
            "ClusterIP 1 true bf16");

  // Every bad field of one spec is named.
  auto bad = apply("bad-md.yaml", R"(apiVersion: hotswap.io/v1alpha1
kind: ModelDeployment
metadata: {name: bad}
spec:
  model: {path: /models/x}
  replicas: -1
  migration: {mode: Fast, bandwidthLimit: lots, downtimeBudgetMs: 100000}
)");
  EXPECT_FALSE(bad.ok()) << bad.describe();
  for (const char* field : {"spec.model.name: Required value", "spec.replicas: Invalid value: -1",
                            "spec.migration.mode: Unsupported value: \"Fast\"", "spec.migration.bandwidthLimit",
                            "spec.migration.downtimeBudgetMs: Invalid value: 100000"})
    EXPECT_TRUE(contains(bad.output, field)) << field << "\n" << bad.output;
  EXPECT_FALSE(kubectl({"get", "md", "bad"}).ok()) << "a refused spec is not stored";

  // A ModelMigration: its columns, its default reason, and a status the schema refuses.
  auto mm = apply("mm.yaml", R"(apiVersion: hotswap.io/v1alpha1
kind: ModelMigration
metadata: {name: move-1}
spec:
  deployment: small
  target: {gpuClass: a100-sim}
)");
  ASSERT_TRUE(mm.ok()) << mm.describe();
  auto get_mm = kubectl({"get", "mm"});
  ASSERT_TRUE(get_mm.ok()) << get_mm.describe();
  for (const char* column : {"DEPLOYMENT", "SOURCE", "TARGET", "PHASE", "PROGRESS", "DOWNTIME-MS"})
    EXPECT_TRUE(contains(get_mm.output, column)) << get_mm.output;
  EXPECT_EQ(jsonpath({"mm", "move-1"}, "{.spec.reason}"), "Manual");
  auto phase = kubectl({"patch", "mm", "move-1", "--subresource=status", "--type=merge", "-p",
                        R"({"status":{"phase":"Teleporting"}})"});
  EXPECT_FALSE(phase.ok()) << phase.describe();
  EXPECT_TRUE(contains(phase.output, "status.phase: Unsupported value: \"Teleporting\"")) << phase.output;
  auto good = kubectl({"patch", "mm", "move-1", "--subresource=status", "--type=merge", "-p",
                       R"({"status":{"phase":"PreCopy","progress":"round 1","downtimeMs":12.5}})"});
  ASSERT_TRUE(good.ok()) << good.describe();
  auto after = kubectl({"get", "mm", "move-1"});
  EXPECT_TRUE(contains(after.output, "PreCopy")) << after.output;
  EXPECT_TRUE(contains(after.output, "round 1")) << after.output;
}

}  // namespace
}  // namespace hotswap::devcluster
