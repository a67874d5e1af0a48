// Unix domain stream sockets for the same-node transports (cuda-ipc's control channel): listen,
// accept and connect with deadlines. The connected sockets are non-blocking, so tcp_socket.h's
// send_all() and receive_some() work on them unchanged.
//
// A name is a filesystem path ("/run/hotswap/migration-1.sock") or, with a leading '@', a name in
// Linux's abstract namespace ("@hotswap-migration-1", no file; visible within one network
// namespace only, so Pods in their own network namespaces need a path on a shared volume). Who
// may connect is decided by the permissions of the path's directory.
#pragma once

#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/tcp_socket.h"
#include "common/status.h"

namespace hotswap::migration {

// sun_path holds 108 bytes with the terminating NUL.
inline constexpr size_t kMaxUnixSocketNameBytes = 107;

// OK for a name listen_unix_socket() and connect_unix_socket() accept: an absolute path, or '@'
// and at least one more byte; at most kMaxUnixSocketNameBytes; no NUL.
Status check_unix_socket_name(const std::string& name);

// A listening socket. A path that is left over from a process that died (a socket nobody accepts
// on) is removed first; any other existing file is an error.
StatusOr<UniqueFd> listen_unix_socket(const std::string& name, int backlog = 16);
// The next connection on a listening socket, waiting until the deadline.
StatusOr<UniqueFd> accept_unix_socket(int listen_fd, Deadline deadline, const std::string& name);
// A connected socket, waiting until the deadline while the listener's backlog is full.
StatusOr<UniqueFd> connect_unix_socket(const std::string& name, Deadline deadline);
// Removes a listener's path (nothing for an abstract name).
void remove_unix_socket_name(const std::string& name);

}  // namespace hotswap::migration
