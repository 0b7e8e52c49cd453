// The `carpool` subcommands. Each takes the arguments after its name and returns an exit code.
#pragma once

namespace carpool::cli {

int cmd_generate(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_pull(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_serve(int argc, char** argv);

}  // namespace carpool::cli
