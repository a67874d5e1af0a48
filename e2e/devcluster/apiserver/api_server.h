// ApiServer: the dev cluster's Kubernetes API server over HTTP on loopback, for kubectl, the
// operator and the node-side components. Serves discovery (/version, /api, /apis, the
// APIResourceLists), every verb on the built-in types (resource_types.h) and on the custom
// resources of established CRDs, watches as chunked JSON event streams with bookmarks, Tables
// for `kubectl get`, bearer-token authentication, and an optional state file that is saved a
// moment after every change and loaded at start.
//
// Threads: cpprest's listener threads run the handlers; the store serialises writes; the
// in-process controllers (controllers.h) and the state saver have a thread each; a bookmark
// thread ticks the open watches.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"
#include "e2e/devcluster/apiserver/api_objects.h"

namespace hotswap::devcluster {

struct ApiServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;       // 0: a free port
  std::string token;  // the bearer token clients must send; empty: no authentication
  std::string state_file;  // "" : in memory only
  size_t event_log_limit = 10000;  // changes a watch can resume from
  std::chrono::milliseconds bookmark_interval{5000};
};

class ApiServer {
 public:
  static StatusOr<std::unique_ptr<ApiServer>> start(ApiServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Ends the open watches, stops listening, saves the state file. Idempotent.
  void stop();
  std::string url() const;  // "http://127.0.0.1:PORT"
  // Requests received so far by User-Agent (a watch counts once), for the operator benchmark.
  std::map<std::string, int64_t> requests_by_user_agent() const;

  ApiObjects& api();
  ObjectStore& store();

  // A kubeconfig whose current context reaches this server with its token.
  Status write_kubeconfig(const std::string& path) const;

 private:
  struct Impl;
  explicit ApiServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace hotswap::devcluster
