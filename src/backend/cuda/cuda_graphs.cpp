// CudaBackend step graphs: record the kernels and cuBLAS calls of a step once per key with stream
// capture, then replay them with one cudaGraphLaunch (a decode step is ~450 launches).
//
// What makes a replay correct: the caller's key fixes every host-side argument (see
// Backend::run_graph); step inputs are uploaded into fixed buffers before the replay; cuBLAS has a
// fixed workspace (cublasSetWorkspace in init), so it allocates nothing while recording; and the
// scratch buffers a recording uses are never freed under it (a scratch slot that grows drops every
// recording first, see CudaBackend::scratch).
#include <cstdio>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "util/check.h"

namespace carpool::cuda {
namespace {

// Past this many recordings (each a few hundred nodes), all are dropped and recorded again.
constexpr size_t kMaxGraphs = 256;

}  // namespace

size_t CudaBackend::graph_count() const {
  size_t n = 0;
  for (const auto& [key, g] : graphs_) n += g.exec != nullptr ? 1 : 0;
  return n;
}

// Recordings are kept while off (A/B checks switch back and forth); scratch growth still drops
// them.
void CudaBackend::set_graphs_enabled(bool on) {
  graphs_on_ = on;
}

void CudaBackend::drop_all_graphs() {
  CARPOOL_CHECK(!capturing_);
  // An executable graph still running is freed by the driver when it completes.
  for (auto& [key, g] : graphs_)
    if (g.exec != nullptr) CUDA_CHECK(cudaGraphExecDestroy(g.exec));
  graphs_.clear();
}

void CudaBackend::drop_graphs(const void* owner) {
  CARPOOL_CHECK(!capturing_);
  for (auto it = graphs_.begin(); it != graphs_.end();) {
    if (it->first.first == owner) {
      if (it->second.exec != nullptr) CUDA_CHECK(cudaGraphExecDestroy(it->second.exec));
      it = graphs_.erase(it);
    } else {
      ++it;
    }
  }
}

void CudaBackend::free_retired_scratch() {
  if (retired_scratch_.empty()) return;
  CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  for (void* p : retired_scratch_) CUDA_CHECK(cudaFree(p));
  retired_scratch_.clear();
}

void CudaBackend::run_graph(const void* owner, uint64_t key, const std::function<void()>& enqueue) {
  if (!graphs_enabled() || capturing_) {
    enqueue();
    return;
  }
  const auto id = std::make_pair(owner, key);
  if (auto it = graphs_.find(id); it != graphs_.end() && it->second.exec != nullptr) {
    CUDA_CHECK(cudaGraphLaunch(it->second.exec, ctx_.stream));
    ++graph_replays_;
    return;
  }
  if (graphs_.size() >= kMaxGraphs && graphs_.find(id) == graphs_.end()) drop_all_graphs();
  GraphEntry& entry = graphs_[id];
  if (entry.failed || ++entry.calls < 2) {  // first call: direct, so lazy set-up happens here
    enqueue();
    return;
  }
  // Any error left over from earlier work must not be mistaken for a recording failure.
  CUDA_CHECK(cudaGetLastError());
  for (int attempt = 0; attempt < 2; ++attempt) {
    const uint64_t generation = scratch_generation_;
    CUDA_CHECK(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeRelaxed));
    capturing_ = true;
    enqueue();  // recorded, not run
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(ctx_.stream, &graph);
    if (e != cudaSuccess || graph == nullptr) {
      cudaGetLastError();
      if (graph != nullptr) cudaGraphDestroy(graph);
      std::fprintf(stderr, "carpool: CUDA graph recording failed (%s); running directly\n",
                   cudaGetErrorString(e));
      break;
    }
    if (scratch_generation_ != generation) {
      // A scratch buffer grew while recording: this recording may use the replaced buffer, and
      // every other recording does. Drop them all and record again at the new sizes.
      CUDA_CHECK(cudaGraphDestroy(graph));
      free_retired_scratch();
      for (auto it = graphs_.begin(); it != graphs_.end();) {
        if (it->first == id) {
          ++it;
          continue;
        }
        if (it->second.exec != nullptr) CUDA_CHECK(cudaGraphExecDestroy(it->second.exec));
        it = graphs_.erase(it);
      }
      continue;
    }
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    CUDA_CHECK(cudaGraphDestroy(graph));
    if (e != cudaSuccess) {
      cudaGetLastError();
      std::fprintf(stderr, "carpool: CUDA graph instantiation failed (%s); running directly\n",
                   cudaGetErrorString(e));
      break;
    }
    graphs_[id].exec = exec;
    CUDA_CHECK(cudaGraphLaunch(exec, ctx_.stream));
    ++graph_replays_;
    return;
  }
  graphs_[id].failed = true;
  enqueue();
}

}  // namespace carpool::cuda
