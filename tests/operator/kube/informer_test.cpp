#include <gtest/gtest.h>

#include "operator/kube/informer.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "operator/kube/object.h"
#include "tests/operator/kube/fake_api_server.h"

namespace hotswap::kube {
namespace {

using fake::FakeApiServer;
using nlohmann::json;
using std::chrono::milliseconds;

json pod(const std::string& name, const std::string& phase = "Pending") {
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}}}, {"status", {{"phase", phase}}}};
}

// What the handlers saw, as "add a/p1", "update a/p1 Pending->Running", "delete a/p0".
struct Journal {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> lines;
  std::atomic<int> concurrent{0};
  std::atomic<bool> overlapped{false};

  void push(std::string s) {
    if (concurrent.fetch_add(1) != 0) overlapped = true;
    {
      std::lock_guard<std::mutex> lk(mu);
      lines.push_back(std::move(s));
    }
    cv.notify_all();
    concurrent.fetch_sub(1);
  }
  InformerHandlers handlers() {
    InformerHandlers h;
    h.on_add = [this](const json& o) { push("add " + object_key(o)); };
    h.on_update = [this](const json& a, const json& b) {
      push("update " + object_key(b) + " " + a["status"]["phase"].get<std::string>() + "->" +
           b["status"]["phase"].get<std::string>());
    };
    h.on_delete = [this](const json& o) { push("delete " + object_key(o)); };
    return h;
  }
  bool wait_for(const std::string& line, milliseconds timeout = milliseconds(5000)) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, timeout, [&] { return std::find(lines.begin(), lines.end(), line) != lines.end(); });
  }
  bool wait_count(size_t n, milliseconds timeout = milliseconds(5000)) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, timeout, [&] { return lines.size() >= n; });
  }
  std::vector<std::string> copy() {
    std::lock_guard<std::mutex> lk(mu);
    return lines;
  }
};

class InformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = FakeApiServer::start();
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(s).value();
    ClusterConfig c;
    c.server = server_->url();
    auto client = RestClient::create(c);
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    client_ = std::move(client).value();
  }
  InformerOptions options() {
    InformerOptions o;
    o.collection = ResourceRef::core("pods").in("a");
    o.backoff_initial = milliseconds(50);
    o.backoff_max = milliseconds(400);
    return o;
  }
  // Bounded poll for a condition another thread makes true.
  template <typename Fn>
  bool eventually(Fn fn, milliseconds timeout = milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fn()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return fn();
  }
  std::unique_ptr<FakeApiServer> server_;
  std::unique_ptr<RestClient> client_;
};

TEST_F(InformerTest, ListsInPagesThenWatchesAndReportsEveryChange) {
  for (int i = 0; i < 3; ++i) server_->put("/api/v1", "pods", "a", pod("p" + std::to_string(i)));
  server_->put("/api/v1", "pods", "b", pod("elsewhere"));
  Journal j;
  InformerOptions o = options();
  o.page_size = 2;
  Informer inf(*client_, o);
  ASSERT_TRUE(inf.add_handlers(j.handlers()).ok());
  EXPECT_FALSE(inf.has_synced());
  ASSERT_TRUE(inf.start().ok());
  ASSERT_TRUE(inf.wait_for_sync(milliseconds(5000)));
  ASSERT_TRUE(j.wait_count(3));
  EXPECT_EQ(j.copy(), (std::vector<std::string>{"add a/p0", "add a/p1", "add a/p2"}));
  EXPECT_EQ(inf.size(), 3u);
  auto p1 = inf.get("a", "p1");
  ASSERT_NE(p1, nullptr);
  EXPECT_EQ((*p1)["kind"], "Pod");  // filled in: list items carry no kind
  EXPECT_EQ((*p1)["apiVersion"], "v1");
  EXPECT_EQ(inf.get("a/missing"), nullptr);
  EXPECT_EQ(server_->count("GET", "/api/v1/namespaces/a/pods", false), 2);  // two pages

  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));
  server_->put("/api/v1", "pods", "a", pod("p3"));
  server_->put("/api/v1", "pods", "a", pod("p1", "Running"));
  server_->erase("/api/v1", "pods", "a", "p0");
  ASSERT_TRUE(j.wait_for("delete a/p0"));
  EXPECT_EQ(j.copy(), (std::vector<std::string>{"add a/p0", "add a/p1", "add a/p2", "add a/p3",
                                                "update a/p1 Pending->Running", "delete a/p0"}));
  EXPECT_EQ(inf.get("a/p0"), nullptr);
  EXPECT_EQ((*inf.get("a/p1"))["status"]["phase"], "Running");
  auto listed = inf.list();
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(object_name(*listed[0]), "p1");
  EXPECT_EQ(inf.resource_version(), std::to_string(server_->resource_version()));
  EXPECT_EQ(inf.list_count(), 1);
  EXPECT_FALSE(j.overlapped.load());

  // The watch started from the list's resourceVersion, with bookmarks.
  for (const auto& r : server_->requests()) {
    if (!r.is_watch()) continue;
    EXPECT_EQ(r.query.at("allowWatchBookmarks"), "true");
    EXPECT_FALSE(r.query.at("resourceVersion").empty());
    EXPECT_FALSE(r.query.count("limit"));
  }
  inf.stop();
}

TEST_F(InformerTest, ExpiredWatchRelistsAndReportsWhatItMissed) {
  server_->put("/api/v1", "pods", "a", pod("p0"));
  server_->put("/api/v1", "pods", "a", pod("p1"));
  Journal j;
  Informer inf(*client_, options());
  ASSERT_TRUE(inf.add_handlers(j.handlers()).ok());
  ASSERT_TRUE(inf.start().ok());
  ASSERT_TRUE(inf.wait_for_sync(milliseconds(5000)));
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));

  // Changes the watch never delivers, then history compacted past them, then the watch ends:
  // the restart from the informer's resourceVersion gets ERROR 410, and only a relist can tell.
  server_->set_watches_paused(true);
  server_->erase("/api/v1", "pods", "a", "p0");
  server_->put("/api/v1", "pods", "a", pod("p1", "Running"));
  server_->put("/api/v1", "pods", "a", pod("p9"));
  server_->compact();
  server_->end_watches();
  server_->set_watches_paused(false);

  ASSERT_TRUE(j.wait_for("add a/p9"));
  ASSERT_TRUE(j.wait_for("delete a/p0"));
  ASSERT_TRUE(j.wait_for("update a/p1 Pending->Running"));
  EXPECT_TRUE(eventually([&] { return inf.list_count() == 2; }));
  EXPECT_EQ(inf.size(), 2u);
  EXPECT_EQ(inf.get("a/p0"), nullptr);
  EXPECT_NE(inf.get("a/p9"), nullptr);
  EXPECT_EQ(server_->count("GET", "/api/v1/namespaces/a/pods", false), 2);
  // It watches again from the fresh list, and events flow.
  server_->put("/api/v1", "pods", "a", pod("p10"));
  ASSERT_TRUE(j.wait_for("add a/p10"));
}

TEST_F(InformerTest, BrokenWatchRelistsAfterBackoff) {
  server_->put("/api/v1", "pods", "a", pod("p0"));
  InformerOptions o = options();
  o.backoff_initial = milliseconds(300);
  Informer inf(*client_, o);
  ASSERT_TRUE(inf.start().ok());
  ASSERT_TRUE(inf.wait_for_sync(milliseconds(5000)));
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));
  auto cut_at = std::chrono::steady_clock::now();
  server_->break_watches();
  // The failure shows during the backoff; the relist's success clears it.
  ASSERT_TRUE(eventually([&] { return !inf.last_error().ok(); }));
  ASSERT_TRUE(eventually([&] { return inf.list_count() == 2; }));
  EXPECT_GE(std::chrono::steady_clock::now() - cut_at, milliseconds(290));
  EXPECT_TRUE(inf.last_error().ok());
  ASSERT_TRUE(eventually([&] { return inf.watch_count() == 2; }));
  server_->put("/api/v1", "pods", "a", pod("p1"));
  EXPECT_TRUE(eventually([&] { return inf.get("a/p1") != nullptr; }));
}

TEST_F(InformerTest, FailingListsAreRetriedWithGrowingBackoff) {
  std::atomic<int> lists{0};
  server_->set_hook([&](const fake::Recorded& r) -> std::optional<fake::Reply> {
    if (r.method == "GET" && !r.is_watch() && lists.fetch_add(1) < 3) {
      return fake::Reply{500, fake::status_object(500, "InternalError", "etcd leader changed")};
    }
    return std::nullopt;
  });
  server_->put("/api/v1", "pods", "a", pod("p0"));
  Informer inf(*client_, options());  // backoff 50, 100, 200 ms
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(inf.start().ok());
  ASSERT_TRUE(eventually([&] { return !inf.last_error().ok(); }));
  EXPECT_NE(inf.last_error().message().find("etcd leader changed"), std::string::npos);
  EXPECT_FALSE(inf.has_synced());
  ASSERT_TRUE(inf.wait_for_sync(milliseconds(5000)));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(340));
  EXPECT_EQ(lists.load(), 4);
  EXPECT_TRUE(inf.last_error().ok());
  EXPECT_NE(inf.get("a/p0"), nullptr);
}

TEST_F(InformerTest, ServerClosedWatchResumesWithoutRelisting) {
  InformerOptions o = options();
  o.watch_timeout_seconds = 1;  // each watch ends after 1 s
  Journal j;
  Informer inf(*client_, o);
  ASSERT_TRUE(inf.add_handlers(j.handlers()).ok());
  ASSERT_TRUE(inf.start().ok());
  ASSERT_TRUE(inf.wait_for_sync(milliseconds(5000)));
  ASSERT_TRUE(eventually([&] { return inf.watch_count() >= 3; }, milliseconds(8000)));
  server_->put("/api/v1", "pods", "a", pod("late"));
  ASSERT_TRUE(j.wait_for("add a/late"));
  EXPECT_EQ(inf.list_count(), 1);
  for (const auto& r : server_->requests()) {
    if (r.is_watch()) {
      EXPECT_EQ(r.query.at("timeoutSeconds"), "1");
    }
  }
}

TEST_F(InformerTest, AllNamespacesSelectorsAndSnapshotsFromOtherThreads) {
  json labelled = pod("x");
  labelled["metadata"]["labels"] = {{"app", "llama"}};
  server_->put("/api/v1", "pods", "a", labelled);
  labelled["metadata"]["name"] = "y";
  server_->put("/api/v1", "pods", "b", labelled);
  server_->put("/api/v1", "pods", "b", pod("unlabelled"));
  InformerOptions o = options();
  o.collection = ResourceRef::core("pods");  // every namespace
  o.label_selector = "app=llama";
  Informer inf(*client_, o);
  ASSERT_TRUE(inf.start().ok());
  ASSERT_TRUE(inf.wait_for_sync(milliseconds(5000)));
  EXPECT_EQ(inf.size(), 2u);
  EXPECT_EQ(inf.list("b").size(), 1u);
  EXPECT_EQ(server_->count("GET", "/api/v1/pods", false), 1);
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));

  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    for (int i = 0; i < 100000 && !stop.load(); ++i) {
      auto snap = inf.snapshot();
      for (const auto& [k, v] : snap) EXPECT_FALSE(object_name(*v).empty());
      reads.fetch_add(1);
    }
  });
  for (int i = 0; i < 20; ++i) {
    json p = pod("n" + std::to_string(i));
    p["metadata"]["labels"] = {{"app", "llama"}};
    server_->put("/api/v1", "pods", "c", p);
  }
  EXPECT_TRUE(eventually([&] { return inf.size() == 22u; }));
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
}

TEST_F(InformerTest, AThrowingHandlerDoesNotStopTheOthers) {
  server_->put("/api/v1", "pods", "a", pod("p0"));
  Journal j;
  Informer inf(*client_, options());
  InformerHandlers bad;
  bad.on_add = [](const json&) { throw std::runtime_error("handler bug"); };
  ASSERT_TRUE(inf.add_handlers(bad).ok());
  ASSERT_TRUE(inf.add_handlers(j.handlers()).ok());
  ASSERT_TRUE(inf.start().ok());
  EXPECT_FALSE(inf.add_handlers(j.handlers()).ok());  // too late
  ASSERT_TRUE(j.wait_for("add a/p0"));
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));
  server_->put("/api/v1", "pods", "a", pod("p1"));
  ASSERT_TRUE(j.wait_for("add a/p1"));
}

TEST_F(InformerTest, StopIsPromptWhileWatchingOrBackingOff) {
  Informer watching(*client_, options());
  ASSERT_TRUE(watching.start().ok());
  ASSERT_TRUE(watching.wait_for_sync(milliseconds(5000)));
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));
  auto t0 = std::chrono::steady_clock::now();
  watching.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1500));

  // Against nothing at all, with a long backoff.
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  ClusterConfig c;
  c.server = "http://127.0.0.1:" + std::to_string(*port);
  auto dead = RestClient::create(c);
  ASSERT_TRUE(dead.ok());
  InformerOptions o = options();
  o.backoff_initial = milliseconds(60000);
  Informer backing_off(**dead, o);
  ASSERT_TRUE(backing_off.start().ok());
  ASSERT_TRUE(eventually([&] { return !backing_off.last_error().ok(); }));
  t0 = std::chrono::steady_clock::now();
  backing_off.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1500));
  EXPECT_FALSE(backing_off.has_synced());
}

TEST(InformerStart, RefusesANamedReference) {
  ClusterConfig c;
  c.server = "http://127.0.0.1:1";
  auto client = RestClient::create(c);
  ASSERT_TRUE(client.ok());
  InformerOptions o;
  o.collection = ResourceRef::core("pods").in("a").named("p");
  Informer inf(**client, o);
  EXPECT_FALSE(inf.start().ok());
}

}  // namespace
}  // namespace hotswap::kube
