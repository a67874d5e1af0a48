// A write-only cpprestsdk stream buffer that hands each piece of an HTTP response body to
// on_bytes() the moment cpprest's I/O thread has read it from the socket (set it with
// http_request::set_response_stream). Reading response.body() instead costs several task hops
// per piece, and a producer/consumer buffer's getn(n) waits for n bytes unless the writer
// syncs: neither fits a stream of small server-sent events that must be acted on (or timed)
// as they arrive. The end of the body and any error come from http_response::content_ready().
//
// Threads: on_bytes runs on cpprest's I/O threads, one piece at a time for a given response.
#pragma once

#include <cpprest/streams.h>

#include <chrono>
#include <cstdint>

namespace hotswap::http {

class BodySink : public concurrency::streams::details::streambuf_state_manager<uint8_t> {
  using Base = concurrency::streams::details::streambuf_state_manager<uint8_t>;

 public:
  using Clock = std::chrono::steady_clock;
  BodySink() : Base(std::ios_base::out) {}

  bool can_seek() const override { return false; }
  bool has_size() const override { return false; }
  size_t buffer_size(std::ios_base::openmode) const override { return 0; }
  void set_buffer_size(size_t, std::ios_base::openmode) override {}
  size_t in_avail() const override { return 0; }
  pos_type getpos(std::ios_base::openmode) const override { return static_cast<pos_type>(traits::eof()); }
  pos_type seekpos(pos_type, std::ios_base::openmode) override { return static_cast<pos_type>(traits::eof()); }
  pos_type seekoff(off_type, std::ios_base::seekdir, std::ios_base::openmode) override {
    return static_cast<pos_type>(traits::eof());
  }
  bool acquire(uint8_t*& ptr, size_t& count) override {
    ptr = nullptr;
    count = 0;
    return false;
  }
  void release(uint8_t*, size_t) override {}

 protected:
  // One piece of the body, stamped with the time it was handed over.
  virtual void on_bytes(const uint8_t* data, size_t n, Clock::time_point arrival) = 0;

  pplx::task<int_type> _putc(uint8_t ch) override {
    on_bytes(&ch, 1, Clock::now());
    return pplx::task_from_result<int_type>(ch);
  }
  pplx::task<size_t> _putn(const uint8_t* ptr, size_t count) override {
    on_bytes(ptr, count, Clock::now());
    return pplx::task_from_result<size_t>(count);
  }
  pplx::task<int_type> _bumpc() override { return pplx::task_from_result<int_type>(traits::eof()); }
  int_type _sbumpc() override { return traits::eof(); }
  pplx::task<int_type> _getc() override { return pplx::task_from_result<int_type>(traits::eof()); }
  int_type _sgetc() override { return traits::eof(); }
  pplx::task<int_type> _nextc() override { return pplx::task_from_result<int_type>(traits::eof()); }
  pplx::task<int_type> _ungetc() override { return pplx::task_from_result<int_type>(traits::eof()); }
  pplx::task<size_t> _getn(uint8_t*, size_t) override { return pplx::task_from_result<size_t>(0); }
  size_t _scopy(uint8_t*, size_t) override { return 0; }
  pplx::task<bool> _sync() override { return pplx::task_from_result(true); }
  uint8_t* _alloc(size_t) override { return nullptr; }
  void _commit(size_t) override {}
};

}  // namespace hotswap::http
