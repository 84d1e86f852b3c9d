// Host-side check of the CUDA chunker (multi_tensor_apply.cuh), which is plain C++: every chunk
// of every non-empty tensor is launched exactly once, with the right addresses, and no launch
// exceeds the per-launch limits. Built and run by tests/test_multi_tensor_apply.py.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <utility>
#include <vector>

#include "multi_tensor_apply.cuh"

using namespace fusedlr::cuda;

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

static void run_case(const std::vector<int64_t>& sizes, int max_blocks = kMaxBlocks) {
  // Tensor i is identified by the fake address (i + 1) * 16 in every list.
  std::map<std::pair<int64_t, int64_t>, int> seen;  // (tensor, chunk) -> times launched
  int launches = 0;
  multi_tensor_apply<3>(
      static_cast<int64_t>(sizes.size()),
      [&](TensorListMeta<3>& meta, int slot, int64_t i) -> int64_t {
        for (int d = 0; d < 3; ++d) meta.addresses[d][slot] = reinterpret_cast<void*>((i + 1) * 16);
        meta.counter[slot] = nullptr;
        return sizes[i];
      },
      [&](const TensorListMeta<3>& meta, int blocks) {
        ++launches;
        CHECK(blocks > 0 && blocks <= max_blocks);
        for (int b = 0; b < blocks; ++b) {
          const int slot = meta.block_to_tensor[b];
          CHECK(slot >= 0 && slot < kMaxTensors);
          const int64_t tensor = reinterpret_cast<int64_t>(meta.addresses[0][slot]) / 16 - 1;
          CHECK(meta.addresses[1][slot] == meta.addresses[0][slot]);
          CHECK(tensor >= 0 && tensor < static_cast<int64_t>(sizes.size()));
          CHECK(meta.numel[slot] == sizes[tensor]);
          const int64_t chunk = meta.block_to_chunk[b];
          CHECK(chunk * kChunkSize < sizes[tensor]);
          ++seen[{tensor, chunk}];
        }
      },
      max_blocks);
  int64_t expected = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t chunks = (sizes[i] + kChunkSize - 1) / kChunkSize;
    expected += chunks;
    for (int64_t c = 0; c < chunks; ++c) CHECK((seen[{static_cast<int64_t>(i), c}] == 1));
  }
  CHECK(static_cast<int64_t>(seen.size()) == expected);
  if (expected == 0) CHECK(launches == 0);
}

int main() {
  run_case({});
  run_case({0, 0});
  run_case({1});
  run_case({kChunkSize});
  run_case({kChunkSize + 1, 0, 3});
  run_case(std::vector<int64_t>(2000, 1000));                      // many tiny tensors
  run_case({int64_t(kChunkSize) * (kMaxBlocks + 7) + 5});          // one tensor over several launches
  std::vector<int64_t> mixed;
  for (int i = 0; i < 300; ++i) mixed.push_back((i * 7919) % (3 * kChunkSize) + (i % 5 == 0 ? 0 : 1));
  run_case(mixed);
  std::vector<int64_t> boundary(kMaxTensors - 1, 10);
  boundary.push_back(int64_t(kChunkSize) * 400);  // the slot limit and the block limit meet
  boundary.push_back(10);
  run_case(boundary);
  // Launches sized to whole waves of the GPU (blocks_per_launch): the same coverage.
  CHECK(blocks_per_launch(132, 2) == 264 && blocks_per_launch(80, 2) == 320 && blocks_per_launch(200, 2) == 320);
  CHECK(blocks_per_launch(0, 2) == kMaxBlocks && blocks_per_launch(7, 3) == 315);
  run_case({int64_t(kChunkSize) * (kMaxBlocks + 7) + 5}, blocks_per_launch(132, 2));
  run_case(mixed, 264);
  run_case(boundary, 21);
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
