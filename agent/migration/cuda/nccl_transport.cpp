#include "agent/migration/cuda/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/cuda/bulk_link.h"
#include "agent/migration/cuda/gpu_device.h"
#include "agent/migration/cuda/gpu_endpoint.h"
#include "kernels/cuda/cuda_check.h"

namespace hotswap::migration {
namespace {

constexpr char kReadyMagic[4] = {'H', 'S', 'N', 'R'};
constexpr uint16_t kVersion = 1;
constexpr int kSourceRank = 0;
constexpr int kTargetRank = 1;
constexpr uint64_t kWindowPieces = 2;

static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes, "the hello carries a 128-byte ncclUniqueId");

Status cuda_status(cudaError_t err, const std::string& what) {
  (void)cudaGetLastError();
  return kernels::cuda::check_cuda(err, what.c_str());
}

const char* nccl_result_name(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "ncclSuccess";
    case ncclUnhandledCudaError:
      return "ncclUnhandledCudaError";
    case ncclSystemError:
      return "ncclSystemError";
    case ncclInternalError:
      return "ncclInternalError";
    case ncclInvalidArgument:
      return "ncclInvalidArgument";
    case ncclInvalidUsage:
      return "ncclInvalidUsage";
    case ncclRemoteError:
      return "ncclRemoteError";
    case ncclInProgress:
      return "ncclInProgress";
    default:
      return "ncclResult?";
  }
}

// "what: ncclRemoteError: remote process exited or there was a network error (last error text)".
Status nccl_status(ncclResult_t r, ncclComm_t comm, const std::string& what) {
  std::string msg = what + ": " + nccl_result_name(r) + ": " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') msg += std::string(" (") + last + ")";
  switch (r) {
    case ncclSystemError:
    case ncclRemoteError:
      return unavailable(std::move(msg));  // the network or the peer
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return invalid_argument(std::move(msg));
    default:
      return internal_error(std::move(msg));
  }
}

// Polls: yields first (a piece over NVLink takes microseconds), then sleeps up to 1 ms.
class Backoff {
 public:
  void pause() {
    if (++rounds_ < 64) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(sleep_);
    sleep_ = std::min(sleep_ * 2, std::chrono::microseconds(1000));
  }

 private:
  int rounds_ = 0;
  std::chrono::microseconds sleep_{20};
};

// One end's communicator. Its calls come from one thread at a time (the link's send() on the
// source, receive() on the target); the destructor aborts it, so nothing it started outlives it.
class NcclComm {
 public:
  explicit NcclComm(int device) : device_(device) {}
  ~NcclComm() { abort(); }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  ncclComm_t get() const { return comm_; }

  void abort() {
    if (comm_ == nullptr) return;
    (void)cudaSetDevice(device_);
    (void)ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  // Joins rank `rank` of 2. `peer_failed` is asked between polls: non-OK gives up (the peer
  // said it failed, or closed the control connection).
  Status join(const ncclUniqueId& id, int rank, Deadline deadline, const std::function<Status()>& peer_failed,
              const std::string& who) {
    HOTSWAP_RETURN_IF_ERROR(select_gpu(device_, who));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm_, 2, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      Status st = nccl_status(r, comm_, who + ": ncclCommInitRankConfig (rank " + std::to_string(rank) + " of 2)");
      abort();
      return st;
    }
    Backoff backoff;
    for (;;) {
      ncclResult_t state = ncclSuccess;
      r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) state = r;
      if (state == ncclSuccess) return Status::ok_status();
      if (state != ncclInProgress) {
        Status st = nccl_status(state, comm_, who + ": joining the NCCL communicator");
        abort();
        return st;
      }
      Status peer = peer_failed();
      if (!peer.ok()) {
        abort();
        return peer;
      }
      if (Clock::now() >= deadline) {
        abort();
        return unavailable(who + ": timed out joining the NCCL communicator with the other end");
      }
      backoff.pause();
    }
  }

  // After a call that returned ncclInProgress: waits until the operation is enqueued.
  Status settle(ncclResult_t r, Deadline deadline, const BulkCancel& cancel, const std::string& what) {
    Backoff backoff;
    while (r == ncclInProgress) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
      r = state;
      if (r != ncclInProgress) break;
      HOTSWAP_RETURN_IF_ERROR(cancel());
      if (Clock::now() >= deadline) return unavailable(what + ": timed out enqueueing the NCCL operation");
      backoff.pause();
    }
    if (r != ncclSuccess) return nccl_status(r, comm_, what);
    return Status::ok_status();
  }

  // Waits for the stream (the NCCL operation on it) until the deadline. *done false: the
  // deadline passed first, nothing failed.
  Status wait_stream(cudaStream_t stream, Deadline deadline, const BulkCancel& cancel, const std::string& what,
                     bool* done) {
    Backoff backoff;
    for (;;) {
      const cudaError_t err = cudaStreamQuery(stream);
      if (err == cudaSuccess) {
        *done = true;
        return Status::ok_status();
      }
      if (err != cudaErrorNotReady) return cuda_status(err, what);
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress) {
        return nccl_status(state, comm_, what);
      }
      HOTSWAP_RETURN_IF_ERROR(cancel());
      if (Clock::now() >= deadline) {
        *done = false;
        return Status::ok_status();
      }
      backoff.pause();
    }
  }

 private:
  const int device_;
  ncclComm_t comm_ = nullptr;
};

// Device staging buffer, pinned host buffer and stream of one end.
struct Staging {
  int device = 0;
  void* device_buffer = nullptr;
  void* host_buffer = nullptr;  // the target's only
  cudaStream_t stream = nullptr;

  ~Staging() {
    (void)cudaSetDevice(device);
    if (stream != nullptr) {
      (void)cudaStreamSynchronize(stream);
      (void)cudaStreamDestroy(stream);
    }
    if (device_buffer != nullptr) (void)cudaFree(device_buffer);
    if (host_buffer != nullptr) (void)cudaFreeHost(host_buffer);
    (void)cudaGetLastError();
  }

  static StatusOr<std::unique_ptr<Staging>> create(int device, uint64_t bytes, bool with_host, const std::string& who) {
    HOTSWAP_RETURN_IF_ERROR(select_gpu(device, who));
    auto s = std::make_unique<Staging>();
    s->device = device;
    cudaError_t err = cudaMalloc(&s->device_buffer, bytes);
    if (err != cudaSuccess) {
      s->device_buffer = nullptr;
      return cuda_status(err, who + ": cudaMalloc of a " + std::to_string(bytes) + "-byte staging buffer");
    }
    if (with_host) {
      err = cudaMallocHost(&s->host_buffer, bytes);
      if (err != cudaSuccess) {
        s->host_buffer = nullptr;
        return cuda_status(err, who + ": cudaMallocHost of a " + std::to_string(bytes) + "-byte staging buffer");
      }
    }
    err = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (err != cudaSuccess) {
      s->stream = nullptr;
      return cuda_status(err, who + ": cudaStreamCreate");
    }
    return s;
  }
};

// The source's mover: staging copy in, ncclSend of the whole piece.
class NcclPieceWriter final : public BulkWriter {
 public:
  NcclPieceWriter(std::unique_ptr<NcclComm> comm, std::unique_ptr<Staging> staging, uint64_t piece_bytes,
                  uint64_t window_bytes, std::string peer)
      : comm_(std::move(comm)),
        staging_(std::move(staging)),
        piece_bytes_(piece_bytes),
        window_bytes_(window_bytes),
        peer_(std::move(peer)) {}

  ~NcclPieceWriter() override { comm_->abort(); }  // before the staging buffer goes

  uint64_t window_bytes() const override { return window_bytes_; }
  size_t max_piece_bytes(uint64_t offset) const override { return static_cast<size_t>(piece_bytes_); }
  bool announce_before_write() const override { return true; }

  Status write(uint64_t offset, const void* src, size_t n, Deadline deadline, const BulkCancel& cancel) override {
    if (closed_) return failed_precondition("nccl source: the link was closed");
    if (!broken_.ok()) return broken_;
    Status st = send_piece(src, n, deadline, cancel);
    if (!st.ok()) {
      broken_ = st;
      comm_->abort();  // a send left behind must not complete into a later one
    }
    return st;
  }

  void close() override { closed_ = true; }

 private:
  Status send_piece(const void* src, size_t n, Deadline deadline, const BulkCancel& cancel) {
    const std::string what = "nccl source: sending " + std::to_string(n) + " bytes to the migration target at " + peer_;
    HOTSWAP_RETURN_IF_ERROR(select_gpu(staging_->device, "nccl source"));
    cudaError_t err = cudaMemcpyAsync(staging_->device_buffer, src, n, cudaMemcpyDefault, staging_->stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(staging_->stream);
    if (err != cudaSuccess) return cuda_status(err, what + ": staging copy");
    const ncclResult_t r = ncclSend(staging_->device_buffer, n, ncclUint8, kTargetRank, comm_->get(), staging_->stream);
    HOTSWAP_RETURN_IF_ERROR(comm_->settle(r, deadline, cancel, what + ": ncclSend"));
    bool done = false;
    HOTSWAP_RETURN_IF_ERROR(comm_->wait_stream(staging_->stream, deadline, cancel, what, &done));
    if (!done) return unavailable("timed out sending to " + peer_ + ": it has stopped taking bytes (ncclSend)");
    return Status::ok_status();
  }

  std::unique_ptr<NcclComm> comm_;
  std::unique_ptr<Staging> staging_;
  const uint64_t piece_bytes_;
  const uint64_t window_bytes_;
  const std::string peer_;
  bool closed_ = false;
  Status broken_;
};

// The target's mover: ncclRecv of the announced piece into staging, then out through pinned
// host memory.
class NcclPieceReader final : public BulkReader {
 public:
  NcclPieceReader(std::unique_ptr<NcclComm> comm, std::unique_ptr<Staging> staging, uint64_t piece_bytes,
                  std::string peer)
      : comm_(std::move(comm)), staging_(std::move(staging)), piece_bytes_(piece_bytes), peer_(std::move(peer)) {}

  ~NcclPieceReader() override { comm_->abort(); }

  uint64_t window_bytes() const override { return kWindowPieces * piece_bytes_; }

  StatusOr<size_t> read(uint64_t offset, uint64_t piece_end, void* dst, size_t n, Deadline deadline,
                        const BulkCancel& cancel) override {
    if (!broken_.ok()) return broken_;
    if (offset < staged_end_) return hand_out(offset, dst, n);
    auto got = receive_piece(offset, piece_end, deadline, cancel);
    if (!got.ok()) {
      broken_ = got.status();
      comm_->abort();
      return broken_;
    }
    if (!*got) return size_t{0};
    return hand_out(offset, dst, n);
  }

 private:
  size_t hand_out(uint64_t offset, void* dst, size_t n) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, staged_end_ - offset));
    std::memcpy(dst, static_cast<const uint8_t*>(staging_->host_buffer) + (offset - staged_begin_), k);
    return k;
  }

  // True once piece [offset, piece_end) is in the host buffer; false: the deadline passed first
  // (the receive carries on, and the next call waits for it again).
  StatusOr<bool> receive_piece(uint64_t offset, uint64_t piece_end, Deadline deadline, const BulkCancel& cancel) {
    const uint64_t size = piece_end - offset;
    const std::string what =
        "nccl target: receiving " + std::to_string(size) + " bytes from the migration source at " + peer_;
    if (size == 0 || size > piece_bytes_) {
      return data_loss("protocol error on the connection to " + peer_ + ": a piece of " + std::to_string(size) +
                       " bytes, over the limit of " + std::to_string(piece_bytes_));
    }
    HOTSWAP_RETURN_IF_ERROR(select_gpu(staging_->device, "nccl target"));
    if (!pending_) {
      const ncclResult_t r =
          ncclRecv(staging_->device_buffer, size, ncclUint8, kSourceRank, comm_->get(), staging_->stream);
      HOTSWAP_RETURN_IF_ERROR(comm_->settle(r, deadline, cancel, what + ": ncclRecv"));
      pending_ = true;
      pending_offset_ = offset;
    }
    if (pending_offset_ != offset) return internal_error(what + ": a piece in flight at another offset");
    bool done = false;
    HOTSWAP_RETURN_IF_ERROR(comm_->wait_stream(staging_->stream, deadline, cancel, what, &done));
    if (!done) return false;
    pending_ = false;
    cudaError_t err =
        cudaMemcpyAsync(staging_->host_buffer, staging_->device_buffer, size, cudaMemcpyDeviceToHost, staging_->stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(staging_->stream);
    if (err != cudaSuccess) return cuda_status(err, what + ": copy out of staging");
    staged_begin_ = offset;
    staged_end_ = piece_end;
    return true;
  }

  std::unique_ptr<NcclComm> comm_;
  std::unique_ptr<Staging> staging_;
  const uint64_t piece_bytes_;
  const std::string peer_;
  bool pending_ = false;  // an ncclRecv in flight
  uint64_t pending_offset_ = 0;
  uint64_t staged_begin_ = 0;  // the host buffer holds stream bytes [staged_begin_, staged_end_)
  uint64_t staged_end_ = 0;
  Status broken_;
};

Status check_options(const NcclOptions& o) {
  if (o.device < 0) return invalid_argument("nccl: device " + std::to_string(o.device) + " is not a CUDA ordinal");
  if (o.piece_bytes < kMinNcclPieceBytes || o.piece_bytes > kMaxNcclPieceBytes) {
    return invalid_argument("nccl: pieces of " + std::to_string(o.piece_bytes) + " bytes are outside " +
                            std::to_string(kMinNcclPieceBytes) + ".." + std::to_string(kMaxNcclPieceBytes));
  }
  return Status::ok_status();
}

// Both ends join, then tell each other how it went. While joining, a ready message that comes
// early is read: a failure there (or the socket's EOF) stops the join at once.
Status join_and_exchange_ready(NcclComm& comm, int fd, const ncclUniqueId& id, int rank, Deadline deadline,
                               const std::string& peer, const std::string& who) {
  bool peer_spoke = false;
  Status peer_status;
  Status read_error;
  auto read_ready = [&]() -> Status {
    read_error =
        receive_handshake_status(fd, kReadyMagic, kVersion, deadline, peer, "the NCCL ready message", &peer_status);
    peer_spoke = true;
    if (!read_error.ok()) return read_error;
    if (!peer_status.ok()) {
      return Status(peer_status.code(), "the other end at " + peer + " failed to join: " + peer_status.message());
    }
    return Status::ok_status();
  };
  auto peer_failed = [&]() -> Status {
    if (peer_spoke) return Status::ok_status();
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return Status::ok_status();
    return read_ready();
  };
  Status joined = comm.join(id, rank, deadline, peer_failed, who);
  if (!joined.ok()) {
    // Unless the other end said it failed, it is still joining: tell it why it will not finish.
    if (!peer_spoke || (read_error.ok() && peer_status.ok())) {
      (void)send_handshake_status(fd, kReadyMagic, kVersion, joined, deadline, peer);
    }
    return joined;
  }
  HOTSWAP_RETURN_IF_ERROR(send_handshake_status(fd, kReadyMagic, kVersion, Status::ok_status(), deadline, peer)
                              .with_context(who + ": sending ready"));
  if (!peer_spoke) return read_ready();
  if (!read_error.ok()) return read_error;
  return Status::ok_status();
}

}  // namespace

bool nccl_transport_available() {
  return true;
}

StatusOr<NcclListener> NcclListener::listen(const std::string& host, uint16_t port, NcclOptions options) {
  HOTSWAP_RETURN_IF_ERROR(check_options(options));
  HOTSWAP_RETURN_IF_ERROR(select_gpu(options.device, "nccl target"));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd fd, listen_tcp_socket(host, port));
  HOTSWAP_ASSIGN_OR_RETURN(uint16_t bound, tcp_local_port(fd.get()));
  return NcclListener(std::move(fd), bound, options);
}

StatusOr<std::unique_ptr<ByteLink>> NcclListener::accept_link(std::chrono::milliseconds timeout) {
  const Deadline deadline = deadline_after(timeout);
  std::string address;
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, accept_tcp_socket(fd_.get(), deadline, &address));
  const std::string peer = "nccl://" + address;
  const std::string who = "nccl target on " + gpu_name(options_.device);
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<Staging> staging,
                           Staging::create(options_.device, options_.piece_bytes, true, who));
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) return nccl_status(r, nullptr, who + ": ncclGetUniqueId");
  NcclHello hello;
  hello.piece_bytes = options_.piece_bytes;
  hello.window_bytes = kWindowPieces * options_.piece_bytes;
  std::memcpy(hello.unique_id.data(), &id, kNcclUniqueIdBytes);
  const auto bytes = encode_nccl_hello(hello);
  HOTSWAP_RETURN_IF_ERROR(send_all(sock.get(), bytes.data(), bytes.size(), deadline, -1, peer)
                              .with_context(who + ": sending the hello to the migration source"));
  auto comm = std::make_unique<NcclComm>(options_.device);
  HOTSWAP_RETURN_IF_ERROR(join_and_exchange_ready(*comm, sock.get(), id, kTargetRank, deadline, peer, who));
  auto reader = std::make_unique<NcclPieceReader>(std::move(comm), std::move(staging), options_.piece_bytes, peer);
  BulkLinkOptions link_options;
  link_options.release_grace = std::chrono::milliseconds(0);  // nothing of ours is mapped by the source
  return make_bulk_target_link(std::move(sock), std::move(reader), peer, link_options);
}

StatusOr<std::unique_ptr<ChunkReceiver>> NcclListener::accept(std::chrono::milliseconds timeout,
                                                              ReceiverOptions options) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link, accept_link(timeout));
  return make_stream_receiver(std::move(link), options);
}

StatusOr<std::unique_ptr<ByteLink>> nccl_connect_link(const std::string& host, uint16_t port,
                                                      std::chrono::milliseconds timeout, NcclOptions gpu) {
  const Deadline deadline = deadline_after(timeout);
  HOTSWAP_RETURN_IF_ERROR(check_options(gpu));
  HOTSWAP_RETURN_IF_ERROR(select_gpu(gpu.device, "nccl source"));
  const std::string peer = nccl_endpoint(host, port);
  const std::string who = "nccl source on " + gpu_name(gpu.device);
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, connect_tcp_socket(host, port, deadline));
  uint8_t bytes[kNcclHelloBytes];
  HOTSWAP_RETURN_IF_ERROR(receive_exactly(sock.get(), bytes, sizeof bytes, deadline, peer, "the nccl hello"));
  auto hello = decode_nccl_hello(bytes);
  if (!hello.ok()) {
    (void)send_handshake_status(sock.get(), kReadyMagic, kVersion, hello.status(), deadline, peer);
    return hello.status().with_context("the migration target at " + peer);
  }
  const uint64_t piece_bytes = std::min(gpu.piece_bytes, hello->piece_bytes);
  auto staging = Staging::create(gpu.device, piece_bytes, false, who);
  if (!staging.ok()) {
    (void)send_handshake_status(sock.get(), kReadyMagic, kVersion, staging.status(), deadline, peer);
    return staging.status();
  }
  ncclUniqueId id;
  std::memcpy(&id, hello->unique_id.data(), kNcclUniqueIdBytes);
  auto comm = std::make_unique<NcclComm>(gpu.device);
  HOTSWAP_RETURN_IF_ERROR(join_and_exchange_ready(*comm, sock.get(), id, kSourceRank, deadline, peer, who));
  auto writer = std::make_unique<NcclPieceWriter>(std::move(comm), std::move(staging).value(), piece_bytes,
                                                  hello->window_bytes, peer);
  return make_bulk_source_link(std::move(sock), std::move(writer), peer);
}

StatusOr<std::unique_ptr<ChunkSender>> nccl_connect(const std::string& host, uint16_t port, SenderOptions options,
                                                    std::chrono::milliseconds timeout, NcclOptions gpu) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link, nccl_connect_link(host, port, timeout, gpu));
  return make_stream_sender(std::move(link), options);
}

}  // namespace hotswap::migration
