// The main() of a fuzz target built without libFuzzer (-Dfuzz_replay=true):
// runs LLVMFuzzerTestOneInput once on every file named on the command line,
// or found (not recursively) in a directory named there.  A failed check
// aborts, so a finding fails the test.  Arguments that start with '-' are
// ignored, so the libFuzzer form `target corpus_dir -runs=0` works here too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

bool run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return false;
  }
  const std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A copy of exactly the input's size, as libFuzzer passes it, so that ASan
  // sees any read past its end.
  std::vector<std::uint8_t> copy(data.begin(), data.end());
  LLVMFuzzerTestOneInput(copy.empty() ? nullptr : copy.data(), copy.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t runs = 0;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.starts_with("-")) continue;
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(arg, ec))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        ok = run_file(f) && ok;
        ++runs;
      }
    } else {
      ok = run_file(arg) && ok;
      ++runs;
    }
  }
  std::printf("replay: %zu inputs, no finding\n", runs);
  return ok && runs > 0 ? 0 : 1;
}
