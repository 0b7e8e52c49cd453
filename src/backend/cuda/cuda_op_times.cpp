// CudaBackend's op timing: an event pair on the stream around each op (set_op_timing), read back
// once the stream has drained (take_op_times). Ops enqueued while a graph is recorded are not
// timed (events in a recording do not time the replay).
#include <utility>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"

namespace carpool::cuda {

CudaBackend::OpScope::OpScope(CudaBackend& b, const char* op)
    : b_(b.op_timing_ && !b.capturing_ ? &b : nullptr), op_(op) {
  if (b_ == nullptr) return;
  begin_ = b_->op_event();
  CUDA_CHECK(cudaEventRecord(begin_, b_->ctx_.stream));
}

CudaBackend::OpScope::~OpScope() {
  if (b_ == nullptr) return;
  cudaEvent_t end = b_->op_event();
  CUDA_CHECK(cudaEventRecord(end, b_->ctx_.stream));
  b_->pending_ops_.push_back(
      {key_.empty() ? std::string(op_) : std::move(key_), bytes_, flops_, begin_, end});
}

cudaEvent_t CudaBackend::op_event() {
  if (!spare_events_.empty()) {
    cudaEvent_t e = spare_events_.back();
    spare_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

std::vector<OpTime> CudaBackend::take_op_times() {
  CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  for (PendingOp& p : pending_ops_) {
    float ms = 0.f;
    if (cudaEventElapsedTime(&ms, p.begin, p.end) == cudaSuccess)
      op_times_.add(p.key, static_cast<double>(ms) * 1e-3, p.bytes, p.flops);
    spare_events_.push_back(p.begin);
    spare_events_.push_back(p.end);
  }
  pending_ops_.clear();
  return op_times_.take();
}

}  // namespace carpool::cuda
