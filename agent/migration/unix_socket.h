// Unix domain stream sockets for the same-node transports (shm, and cuda-ipc's control channel):
// listen, accept and connect with deadlines. The connected sockets are non-blocking, so
// tcp_socket.h's send_all() and receive_some() work on them unchanged.
//
// A name is a filesystem path ("/run/hotswap/migration-1.sock") or, with a leading '@', a name in
// Linux's abstract namespace ("@hotswap-migration-1", no file; visible within one network
// namespace only, so Pods in their own network namespaces need a path on a shared volume). Who
// may connect is decided by the permissions of the path's directory.
//
// Where the transports differ (what their messages call the socket, what a listener does with a
// file already at its path, which code a missing file gets), a UnixSocketStyle says which.
#pragma once

#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/tcp_socket.h"
#include "common/status.h"

namespace hotswap::migration {

// sun_path holds 108 bytes with the terminating NUL.
inline constexpr size_t kMaxUnixSocketNameBytes = 107;

struct UnixSocketStyle {
  // What messages call the socket: "connect to <noun> <name>: ...".
  std::string noun = "Unix socket";
  // listen(): a socket file that nobody accepts on (its listener died) is removed and the path
  // reused. false: any file already at the path is refused and left for a person to look at.
  bool replace_stale_file = true;
  // A path whose file (connect) or directory (listen) does not exist is kNotFound (nobody listens
  // there, or the target has gone). false: kUnavailable, as any other failure to reach it is (for
  // a caller that retries until the target listens).
  bool missing_is_not_found = false;
};

// True for a name in the abstract namespace ('@' first).
bool is_abstract_unix_socket_name(const std::string& name);

// OK for a name listen_unix_socket() and connect_unix_socket() accept: an absolute path, or '@'
// and at least one more byte; at most kMaxUnixSocketNameBytes; no NUL.
Status check_unix_socket_name(const std::string& name);

// A listening socket. A file already at the path: see UnixSocketStyle::replace_stale_file.
StatusOr<UniqueFd> listen_unix_socket(const std::string& name, const UnixSocketStyle& style = {}, int backlog = 16);
// The next connection on a listening socket, waiting until the deadline.
StatusOr<UniqueFd> accept_unix_socket(int listen_fd, Deadline deadline, const std::string& name,
                                      const UnixSocketStyle& style = {});
// A connected socket, waiting until the deadline while the listener's backlog is full.
StatusOr<UniqueFd> connect_unix_socket(const std::string& name, Deadline deadline, const UnixSocketStyle& style = {});
// Removes a listener's path (nothing for an abstract name).
void remove_unix_socket_name(const std::string& name);

}  // namespace hotswap::migration
