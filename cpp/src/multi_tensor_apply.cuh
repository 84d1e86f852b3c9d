#pragma once
// How the CUDA step splits work: each tensor is cut into chunks of kChunkSize elements and every
// CUDA block takes one (tensor, chunk) pair. The tensor addresses and the block→(tensor, chunk)
// map travel by value in the kernel's parameter space (under 4 KB), so one launch covers up to
// kMaxTensors tensors / kMaxBlocks chunks with no host-to-device copy; larger lists take a few
// launches. What is done per element lives in the kernel, not here. Plain C++ (no CUDA
// headers), so the host-side packing is unit-tested on machines without a GPU.

#include <cstdint>

namespace fusedlr::cuda {

constexpr int kChunkSize = 65536;
constexpr int kBlockSize = 512;
constexpr int kMaxTensors = 48;
constexpr int kMaxBlocks = 320;

/** Up to kMaxTensors tensors of one launch: `Depth` pointer lists plus one float* per tensor. */
template <int Depth>
struct TensorListMeta {
  void* addresses[Depth][kMaxTensors];
  int64_t numel[kMaxTensors];
  float* counter[kMaxTensors];  // per-tensor step counter (may be null)
  unsigned char block_to_tensor[kMaxBlocks];
  int block_to_chunk[kMaxBlocks];
};
static_assert(sizeof(TensorListMeta<4>) <= 4000, "kernel parameters must stay under 4 KB");

/**
 * The blocks one launch takes on a GPU with `sm_count` multiprocessors that each hold
 * `blocks_per_sm` of our blocks: whole waves (a multiple of sm_count * blocks_per_sm), as many as
 * the metadata holds (kMaxBlocks). 320 was two waves on 80 SMs; on an H200's 132 it is 264, one
 * full wave, where 320 would leave a 56-block tail wave on every launch.
 */
inline int blocks_per_launch(int sm_count, int blocks_per_sm) {
  const int wave = sm_count * blocks_per_sm;
  if (wave <= 0 || wave >= kMaxBlocks) return kMaxBlocks;
  return kMaxBlocks / wave * wave;
}

/**
 * Call `launch(meta, num_blocks)` as few times as possible so that every chunk of every tensor
 * is covered once, at most `max_blocks` (<= kMaxBlocks) blocks a launch. `tensor_count`
 * tensors; `fill(meta, slot, i)` writes tensor i's addresses and counter into `slot` and
 * returns its element count.
 */
template <int Depth, typename Fill, typename Launch>
void multi_tensor_apply(int64_t tensor_count, Fill&& fill, Launch&& launch, int max_blocks = kMaxBlocks) {
  if (max_blocks < 1 || max_blocks > kMaxBlocks) max_blocks = kMaxBlocks;
  TensorListMeta<Depth> meta{};
  int slots = 0;   // tensors placed in this launch
  int blocks = 0;  // chunks placed in this launch
  for (int64_t i = 0; i < tensor_count; ++i) {
    const int64_t numel = fill(meta, slots, i);
    if (numel == 0) continue;  // nothing to do, and the slot is reused
    meta.numel[slots] = numel;
    int slot = slots++;
    const int64_t chunks = (numel + kChunkSize - 1) / kChunkSize;
    for (int64_t c = 0; c < chunks; ++c) {
      meta.block_to_tensor[blocks] = static_cast<unsigned char>(slot);
      meta.block_to_chunk[blocks] = static_cast<int>(c);
      ++blocks;
      const bool tensor_done = c + 1 == chunks;
      if ((slots == kMaxTensors && tensor_done) || blocks == max_blocks) {
        launch(meta, blocks);
        blocks = 0;
        slots = 0;
        if (!tensor_done) {
          // The tensor goes on in the next launch: move it to slot 0.
          for (int d = 0; d < Depth; ++d) meta.addresses[d][0] = meta.addresses[d][slot];
          meta.numel[0] = meta.numel[slot];
          meta.counter[0] = meta.counter[slot];
          slot = 0;
          slots = 1;
        }
      }
    }
  }
  if (blocks > 0) launch(meta, blocks);
}

}  // namespace fusedlr::cuda
