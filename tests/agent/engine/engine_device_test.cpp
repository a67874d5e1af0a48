// Choosing where the model runs (--device): the names, `auto`, and the clear error of
// --device cuda where there is no GPU or no CUDA backend. The CUDA backend itself is tested on
// a GPU by tests/agent/engine/cuda/.
#include <gtest/gtest.h>

#include "agent/engine/cuda_backend.h"
#include "agent/engine/engine.h"
#include "tests/agent/engine/test_models.h"

namespace hotswap::engine {
namespace {

TEST(EngineDevice, NamesResolveAndAutoFollowsTheGpus) {
  EXPECT_EQ(resolve_device("cpu").value(), Device::kCpu);
  EXPECT_EQ(resolve_device("cuda").value(), Device::kCuda);
  EXPECT_EQ(resolve_device("auto").value(), cuda_device_count() > 0 ? Device::kCuda : Device::kCpu);
  auto bad = resolve_device("gpu");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'gpu'"), std::string::npos) << bad.status().message();
  EXPECT_STREQ(device_name(Device::kCpu), "cpu");
  EXPECT_STREQ(device_name(Device::kCuda), "cuda");
}

TEST(EngineDevice, TheCpuBackendNamesItself) {
  auto model = Model::load(testing::tiny_model()).value();
  EngineOptions o;
  o.threads = 1;
  o.kv_blocks = 16;
  auto e = Engine::create(model, o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_STREQ((*e)->backend_name(), "cpu");
}

TEST(EngineDevice, CudaWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: tests/agent/engine/cuda covers --device cuda here";
  auto model = Model::load(testing::tiny_model()).value();
  EngineOptions o;
  o.device = Device::kCuda;
  o.kv_blocks = 16;
  auto e = Engine::create(model, o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
  const std::string why = cuda_backend_built() ? "no CUDA device is visible" : "built without the CUDA backend";
  EXPECT_NE(e.status().message().find(why), std::string::npos) << e.status().message();
  EXPECT_NE(e.status().message().find("--device cpu"), std::string::npos) << e.status().message();
}

}  // namespace
}  // namespace hotswap::engine
