// SseWriter: text written into a body arrives in order, whole, and before the close; what is
// still queued when the writer is destroyed is written first.
// (gtest before cpprest: cpprest defines a U() macro that gtest's headers use as a name.)
#include <gtest/gtest.h>

#include "agent/server/sse_stream.h"

#include <string>
#include <thread>
#include <vector>

namespace hotswap::agent {
namespace {

// Reads a body's buffer to its end (the close), at most 5 s.
std::string read_to_end(const std::shared_ptr<SseBody>& body) {
  std::string out;
  std::vector<uint8_t> buf(4096);
  for (int i = 0; i < 100000; ++i) {
    auto task = body->buffer.getn(buf.data(), buf.size());
    if (task.wait() != pplx::completed) break;
    const size_t n = task.get();
    if (n == 0) break;  // closed, and everything was read
    out.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  return out;
}

TEST(SseWriter, WritesArriveInOrderAndTheCloseComesAfterThem) {
  SseWriter writer;
  auto a = std::make_shared<SseBody>();
  auto b = std::make_shared<SseBody>();
  std::string want_a, want_b;
  // Two producers at once, as the engine thread and the heartbeat thread can be.
  std::thread other([&] {
    for (int i = 0; i < 500; ++i) writer.write(b, "b" + std::to_string(i) + ";");
    writer.close(b);
  });
  for (int i = 0; i < 500; ++i) {
    const std::string text = "id: " + std::to_string(i) + "\ndata: x\n\n";
    want_a += text;
    writer.write(a, text);
  }
  writer.close(a);
  other.join();
  for (int i = 0; i < 500; ++i) want_b += "b" + std::to_string(i) + ";";
  EXPECT_EQ(read_to_end(a), want_a);
  EXPECT_EQ(read_to_end(b), want_b);
}

TEST(SseWriter, WhatIsQueuedWhenTheWriterEndsIsStillWritten) {
  auto body = std::make_shared<SseBody>();
  {
    SseWriter writer;
    for (int i = 0; i < 100; ++i) writer.write(body, std::to_string(i) + ",");
    writer.close(body);
  }
  std::string want;
  for (int i = 0; i < 100; ++i) want += std::to_string(i) + ",";
  EXPECT_EQ(read_to_end(body), want);
}

}  // namespace
}  // namespace hotswap::agent
