#include "agent/migration/cuda/cuda_ipc_transport.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/cuda/bulk_link.h"
#include "agent/migration/cuda/gpu_device.h"
#include "agent/migration/cuda/gpu_endpoint.h"
#include "agent/migration/little_endian.h"
#include "agent/migration/unix_socket.h"
#include "kernels/cuda/cuda_check.h"

namespace hotswap::migration {
namespace {

constexpr char kHelloMagic[4] = {'H', 'S', 'C', 'I'};
constexpr char kAnswerMagic[4] = {'H', 'S', 'C', 'A'};
constexpr uint16_t kVersion = 1;

static_assert(sizeof(cudaIpcMemHandle_t) == 64, "the hello carries a 64-byte cudaIpcMemHandle_t");

Status cuda_status(cudaError_t err, const std::string& what) {
  (void)cudaGetLastError();
  return kernels::cuda::check_cuda(err, what.c_str());
}

// The target's ring: device memory of its own, exported to one source.
class CudaIpcRingReader final : public BulkReader {
 public:
  static StatusOr<std::unique_ptr<CudaIpcRingReader>> create(int device, uint64_t ring_bytes) {
    HOTSWAP_RETURN_IF_ERROR(select_gpu(device, "cuda-ipc target"));
    auto reader = std::unique_ptr<CudaIpcRingReader>(new CudaIpcRingReader(device, ring_bytes));
    cudaError_t err = cudaMalloc(&reader->ring_, ring_bytes);
    if (err != cudaSuccess) {
      reader->ring_ = nullptr;
      return cuda_status(err, "cuda-ipc target: cudaMalloc of a " + std::to_string(ring_bytes) + "-byte ring");
    }
    err = cudaStreamCreateWithFlags(&reader->stream_, cudaStreamNonBlocking);
    if (err != cudaSuccess) {
      reader->stream_ = nullptr;
      return cuda_status(err, "cuda-ipc target: cudaStreamCreate");
    }
    err = cudaIpcGetMemHandle(&reader->handle_, reader->ring_);
    if (err != cudaSuccess) return cuda_status(err, "cuda-ipc target: cudaIpcGetMemHandle of the ring");
    return reader;
  }

  ~CudaIpcRingReader() override {
    (void)cudaSetDevice(device_);
    if (stream_ != nullptr) {
      (void)cudaStreamSynchronize(stream_);
      (void)cudaStreamDestroy(stream_);
    }
    if (ring_ != nullptr) (void)cudaFree(ring_);
    (void)cudaGetLastError();
  }

  const cudaIpcMemHandle_t& handle() const { return handle_; }

  uint64_t window_bytes() const override { return ring_bytes_; }

  StatusOr<size_t> read(uint64_t offset, uint64_t piece_end, void* dst, size_t n, Deadline deadline,
                        const BulkCancel& cancel) override {
    const uint64_t at = offset % ring_bytes_;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, ring_bytes_ - at));
    HOTSWAP_RETURN_IF_ERROR(select_gpu(device_, "cuda-ipc target"));
    cudaError_t err = cudaMemcpyAsync(dst, static_cast<uint8_t*>(ring_) + at, k, cudaMemcpyDefault, stream_);
    // Waited for to the end: dst is the caller's and must not be written after we return.
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
    if (err != cudaSuccess) {
      return cuda_status(
          err, "cuda-ipc target: copying " + std::to_string(k) + " bytes out of the ring at " + std::to_string(at));
    }
    return k;
  }

 private:
  CudaIpcRingReader(int device, uint64_t ring_bytes) : device_(device), ring_bytes_(ring_bytes) {}

  const int device_;
  const uint64_t ring_bytes_;
  void* ring_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaIpcMemHandle_t handle_{};
};

// The source's view of the target's ring, opened from its handle.
class CudaIpcRingWriter final : public BulkWriter {
 public:
  CudaIpcRingWriter(int device, void* ring, uint64_t ring_bytes, cudaStream_t stream)
      : device_(device), ring_(ring), ring_bytes_(ring_bytes), stream_(stream) {}

  ~CudaIpcRingWriter() override {
    close();
    (void)cudaSetDevice(device_);
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    (void)cudaGetLastError();
  }

  uint64_t window_bytes() const override { return ring_bytes_; }
  size_t max_piece_bytes(uint64_t offset) const override {
    return static_cast<size_t>(ring_bytes_ - offset % ring_bytes_);
  }
  bool announce_before_write() const override { return false; }

  Status write(uint64_t offset, const void* src, size_t n, Deadline deadline, const BulkCancel& cancel) override {
    if (ring_ == nullptr) return failed_precondition("cuda-ipc source: the ring was released");
    HOTSWAP_RETURN_IF_ERROR(select_gpu(device_, "cuda-ipc source"));
    const uint64_t at = offset % ring_bytes_;
    cudaError_t err = cudaMemcpyAsync(static_cast<uint8_t*>(ring_) + at, src, n, cudaMemcpyDefault, stream_);
    // Completed before the DATA frame announces it: the target reads as soon as it hears.
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
    if (err != cudaSuccess) {
      return cuda_status(err, "cuda-ipc source: copying " + std::to_string(n) + " bytes into the target's ring at " +
                                  std::to_string(at));
    }
    return Status::ok_status();
  }

  void close() override {
    if (ring_ == nullptr) return;
    (void)cudaSetDevice(device_);
    if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
    (void)cudaIpcCloseMemHandle(ring_);
    (void)cudaGetLastError();
    ring_ = nullptr;
  }

 private:
  const int device_;
  void* ring_;
  const uint64_t ring_bytes_;
  cudaStream_t stream_;
};

Status check_options(const CudaIpcOptions& o, bool target) {
  if (o.device < 0) return invalid_argument("cuda-ipc: device " + std::to_string(o.device) + " is not a CUDA ordinal");
  if (target && (o.ring_bytes < kMinCudaIpcRingBytes || o.ring_bytes > kMaxCudaIpcRingBytes)) {
    return invalid_argument("cuda-ipc: a ring of " + std::to_string(o.ring_bytes) + " bytes is outside " +
                            std::to_string(kMinCudaIpcRingBytes) + ".." + std::to_string(kMaxCudaIpcRingBytes));
  }
  return Status::ok_status();
}

// The source's answer: OK, or the Status it failed with.
Status receive_answer(int fd, Deadline deadline, const std::string& peer) {
  Status answer;
  HOTSWAP_RETURN_IF_ERROR(
      receive_handshake_status(fd, kAnswerMagic, kVersion, deadline, peer, "the cuda-ipc handshake answer", &answer));
  if (answer.ok()) return answer;
  return Status(answer.code(), "the migration source at " + peer + " could not use the ring: " + answer.message());
}

Status send_answer(int fd, const Status& st, Deadline deadline, const std::string& peer) {
  return send_handshake_status(fd, kAnswerMagic, kVersion, st, deadline, peer);
}

}  // namespace

std::array<uint8_t, kCudaIpcHelloBytes> encode_cuda_ipc_hello(const CudaIpcHello& hello) {
  std::array<uint8_t, kCudaIpcHelloBytes> out{};
  std::memcpy(out.data(), kHelloMagic, 4);
  put_le16(out.data() + 4, kVersion);
  put_le32(out.data() + 8, static_cast<uint32_t>(hello.device));
  put_le64(out.data() + 16, hello.ring_bytes);
  std::memcpy(out.data() + 24, hello.pci_bus_id.data(), std::min<size_t>(hello.pci_bus_id.size(), 15));
  std::memcpy(out.data() + 40, hello.memory_handle.data(), 64);
  return out;
}

StatusOr<CudaIpcHello> decode_cuda_ipc_hello(const uint8_t* bytes) {
  if (std::memcmp(bytes, kHelloMagic, 4) != 0) {
    return data_loss("not a cuda-ipc migration target: its hello lacks the magic \"HSCI\"");
  }
  const uint16_t version = get_le16(bytes + 4);
  if (version != kVersion) {
    return failed_precondition("the cuda-ipc migration target speaks version " + std::to_string(version) +
                               "; this agent speaks " + std::to_string(kVersion));
  }
  CudaIpcHello h;
  h.device = static_cast<int32_t>(get_le32(bytes + 8));
  h.ring_bytes = get_le64(bytes + 16);
  if (h.ring_bytes < kMinCudaIpcRingBytes || h.ring_bytes > kMaxCudaIpcRingBytes) {
    return data_loss("the cuda-ipc migration target offers a ring of " + std::to_string(h.ring_bytes) +
                     " bytes, outside " + std::to_string(kMinCudaIpcRingBytes) + ".." +
                     std::to_string(kMaxCudaIpcRingBytes));
  }
  const char* id = reinterpret_cast<const char*>(bytes + 24);
  h.pci_bus_id.assign(id, strnlen(id, 16));
  std::memcpy(h.memory_handle.data(), bytes + 40, 64);
  return h;
}

StatusOr<CudaIpcListener> CudaIpcListener::listen(const std::string& socket_name, CudaIpcOptions options) {
  HOTSWAP_RETURN_IF_ERROR(check_options(options, true));
  HOTSWAP_RETURN_IF_ERROR(check_unix_socket_name(socket_name));
  HOTSWAP_RETURN_IF_ERROR(select_gpu(options.device, "cuda-ipc target"));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd fd, listen_unix_socket(socket_name));
  return CudaIpcListener(std::move(fd), socket_name, options);
}

CudaIpcListener::CudaIpcListener(CudaIpcListener&& other) noexcept
    : fd_(std::move(other.fd_)), name_(std::move(other.name_)), options_(other.options_) {
  other.name_.clear();
}

CudaIpcListener& CudaIpcListener::operator=(CudaIpcListener&& other) noexcept {
  if (this != &other) {
    if (fd_.valid()) remove_unix_socket_name(name_);
    fd_ = std::move(other.fd_);
    name_ = std::move(other.name_);
    options_ = other.options_;
    other.name_.clear();
  }
  return *this;
}

CudaIpcListener::~CudaIpcListener() {
  if (fd_.valid()) remove_unix_socket_name(name_);
}

std::string CudaIpcListener::endpoint() const {
  return cuda_ipc_endpoint(name_);
}

StatusOr<std::unique_ptr<ByteLink>> CudaIpcListener::accept_link(std::chrono::milliseconds timeout) {
  const Deadline deadline = deadline_after(timeout);
  const std::string peer = endpoint();
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, accept_unix_socket(fd_.get(), deadline, name_));
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<CudaIpcRingReader> ring,
                           CudaIpcRingReader::create(options_.device, options_.ring_bytes));
  CudaIpcHello hello;
  hello.device = options_.device;
  hello.ring_bytes = options_.ring_bytes;
  hello.pci_bus_id = gpu_name(options_.device);
  std::memcpy(hello.memory_handle.data(), &ring->handle(), 64);
  const auto bytes = encode_cuda_ipc_hello(hello);
  HOTSWAP_RETURN_IF_ERROR(send_all(sock.get(), bytes.data(), bytes.size(), deadline, -1, peer)
                              .with_context("sending the cuda-ipc hello to the migration source"));
  HOTSWAP_RETURN_IF_ERROR(receive_answer(sock.get(), deadline, peer));
  BulkLinkOptions link_options;
  link_options.release_grace = options_.release_grace;
  return make_bulk_target_link(std::move(sock), std::move(ring), peer, link_options);
}

StatusOr<std::unique_ptr<ChunkReceiver>> CudaIpcListener::accept(std::chrono::milliseconds timeout,
                                                                 ReceiverOptions options) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link, accept_link(timeout));
  return make_stream_receiver(std::move(link), options);
}

StatusOr<std::unique_ptr<ByteLink>> cuda_ipc_connect_link(const std::string& socket_name,
                                                          std::chrono::milliseconds timeout, CudaIpcOptions gpu) {
  const Deadline deadline = deadline_after(timeout);
  HOTSWAP_RETURN_IF_ERROR(check_options(gpu, false));
  HOTSWAP_RETURN_IF_ERROR(check_unix_socket_name(socket_name));
  HOTSWAP_RETURN_IF_ERROR(select_gpu(gpu.device, "cuda-ipc source"));
  const std::string peer = cuda_ipc_endpoint(socket_name);
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, connect_unix_socket(socket_name, deadline));
  uint8_t bytes[kCudaIpcHelloBytes];
  HOTSWAP_RETURN_IF_ERROR(receive_exactly(sock.get(), bytes, sizeof bytes, deadline, peer, "the cuda-ipc hello"));
  auto hello = decode_cuda_ipc_hello(bytes);
  if (!hello.ok()) {
    (void)send_answer(sock.get(), hello.status(), deadline, peer);
    return hello.status().with_context("the migration target at " + peer);
  }

  // Everything from here on is told to the target too, so that its accept() fails saying why.
  auto fail = [&](const Status& st) {
    (void)send_answer(sock.get(), st, deadline, peer);
    return st;
  };
  cudaIpcMemHandle_t handle;
  std::memcpy(&handle, hello->memory_handle.data(), 64);
  void* ring = nullptr;
  cudaError_t err = cudaIpcOpenMemHandle(&ring, handle, cudaIpcMemLazyEnablePeerAccess);
  if (err != cudaSuccess) {
    return fail(cuda_status(err, "cuda-ipc source on " + gpu_name(gpu.device) +
                                     ": cudaIpcOpenMemHandle of the ring of the target on " + hello->pci_bus_id));
  }
  cudaStream_t stream = nullptr;
  err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    (void)cudaIpcCloseMemHandle(ring);
    return fail(cuda_status(err, "cuda-ipc source: cudaStreamCreate"));
  }
  // From here the writer owns the mapping and the stream.
  auto writer = std::make_unique<CudaIpcRingWriter>(gpu.device, ring, hello->ring_bytes, stream);
  HOTSWAP_RETURN_IF_ERROR(send_answer(sock.get(), Status::ok_status(), deadline, peer)
                              .with_context("answering the cuda-ipc hello of the migration target"));
  return make_bulk_source_link(std::move(sock), std::move(writer), peer);
}

StatusOr<std::unique_ptr<ChunkSender>> cuda_ipc_connect(const std::string& socket_name, SenderOptions options,
                                                        std::chrono::milliseconds timeout, CudaIpcOptions gpu) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link, cuda_ipc_connect_link(socket_name, timeout, gpu));
  return make_stream_sender(std::move(link), options);
}

}  // namespace hotswap::migration
