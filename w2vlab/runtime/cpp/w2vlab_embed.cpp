// w2vlab-embed: audio files -> speaker embeddings with a w2vlab waveform artifact, no Python.
//
//   w2vlab-embed [--aoti] [--npy OUT] [--threads N] ARTIFACT AUDIO [AUDIO...]
//
// ARTIFACT is an export directory or the file itself: the TorchScript archive
// (w2vbert_speaker_script_waveform.pt), or with --aoti the AOTInductor package
// (w2vbert_speaker_aoti_waveform.pt2).  The artifact computes the SeamlessM4T features inside
// its graph, so this program only does what w2vlab._audio does in Python: read the file with
// libsndfile (float in [-1, 1]), downmix by the channel mean, resample to the artifact's rate with
// libsoxr (HQ, float32, the python-soxr recipe), then call the graph on [1, N] float32.
//
// Output: one line per embedded file, "path<TAB>v1 v2 ... vD" (%.9g: float32 round-trips), or
// with --npy OUT a float32 [F, D] array of the F embedded files and lines "path<TAB>row".
// A file that cannot be embedded gets one line on stderr and the others are still embedded.
// Exit status: 0 every file embedded, 1 some file failed, 2 bad arguments or artifact.

#include <ATen/Parallel.h>
#include <caffe2/serialize/inline_container.h>
#include <sndfile.h>
#include <soxr.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

// The contract (w2vlab/_contract.py): these names and the tag are what the exporter writes.
const char* kFormatTag = "w2vlab-artifact/3";
const char* kScriptFile = "w2vbert_speaker_script_waveform.pt";
const char* kAotiFile = "w2vbert_speaker_aoti_waveform.pt2";
const char* kMetadataFile = "metadata.json";  // extra/metadata.json inside the .pt and .pt2 zips

struct ArtifactError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct AudioError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ------------------------------------------------------------------ metadata

// Top-level scalar members of a JSON object: {"key": "text" | number | true | ...}, nested
// objects and arrays skipped.  Enough for the handful of scalars this program reads.
std::map<std::string, std::string> top_level_scalars(const std::string& json) {
  std::map<std::string, std::string> out;
  int depth = 0;
  std::string key, token;
  bool in_string = false, expect_value = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (in_string) {
      if (c == '\\' && i + 1 < json.size()) token += json[++i];
      else if (c == '"') in_string = false;
      else token += c;
      continue;
    }
    if (c == '"') { in_string = true; token.clear(); continue; }
    if (c == '{' || c == '[') { ++depth; expect_value = false; continue; }
    if (c == '}' || c == ']') { --depth; continue; }
    if (depth != 1) continue;
    if (c == ':') { key = token; token.clear(); expect_value = true; continue; }
    if (c == ',') {
      if (expect_value) out[key] = token;
      expect_value = false; token.clear(); continue;
    }
    if (expect_value && !std::isspace(static_cast<unsigned char>(c))) token += c;
  }
  if (expect_value) out[key] = token;
  return out;
}

struct Metadata {
  int sample_rate = 0, embedding_dim = 0, min_num_samples = 0, min_program_samples = 0;
};

Metadata check_metadata(const std::string& json, const std::string& source) {
  if (json.empty())
    throw ArtifactError(source + " carries no w2vlab metadata; is it a w2vlab waveform artifact? "
                        "(export one with: w2vlab export --mode waveform)");
  auto fields = top_level_scalars(json);
  if (fields["format"] != kFormatTag)
    throw ArtifactError(source + " has format '" + fields["format"] + "'; this program reads '" + kFormatTag +
                        "' (re-export with the w2vlab it was built with)");
  Metadata m;
  try {
    m.sample_rate = std::stoi(fields.at("sample_rate"));
    m.embedding_dim = std::stoi(fields.at("embedding_dim"));
    m.min_num_samples = std::stoi(fields.at("min_num_samples"));
    m.min_program_samples = fields.count("min_program_samples") ? std::stoi(fields["min_program_samples"]) : 0;
  } catch (const std::exception&) {
    throw ArtifactError(source + " metadata lacks sample_rate, embedding_dim or min_num_samples");
  }
  return m;
}

// ------------------------------------------------------------------ the artifact

struct Encoder {
  Metadata meta;
  std::function<at::Tensor(const at::Tensor&)> embed;  // [1, N] float32 -> [1, D]
};

fs::path resolve(const fs::path& artifact, const char* file_name) {
  if (!fs::exists(artifact)) throw ArtifactError("artifact not found: " + artifact.string());
  if (!fs::is_directory(artifact)) return artifact;
  fs::path file = artifact / file_name;
  if (!fs::exists(file))
    throw ArtifactError(artifact.string() + " has no " + file_name +
                        " (export it with: w2vlab export --mode waveform" +
                        (std::string(file_name) == kAotiFile ? " --format aoti)" : ")"));
  return file;
}

// Intra-op threads set to one for a scope, then restored.
struct OneThread {
  int previous = at::get_num_threads();
  OneThread() { at::set_num_threads(1); }
  ~OneThread() { at::set_num_threads(previous); }
};

Encoder load_torchscript(const fs::path& artifact) {
  fs::path file = resolve(artifact, kScriptFile);
  std::unordered_map<std::string, std::string> extra{{kMetadataFile, ""}};
  auto module = std::make_shared<torch::jit::Module>();
  try {
    *module = torch::jit::load(file.string(), torch::kCPU, extra);
  } catch (const c10::Error& e) {
    throw ArtifactError(file.string() + " is not a TorchScript archive: " + e.what_without_backtrace());
  }
  Metadata meta = check_metadata(extra[kMetadataFile], file.string());
  bool waveform = false;
  for (const auto& child : module->named_children()) waveform |= child.name == "frontend";
  if (!waveform)
    throw ArtifactError(file.string() + " is a w2vlab artifact without a frontend (preprocessed mode?); "
                        "this program needs the waveform artifact, " + kScriptFile);
  module->eval();
  // frontend -> encode as two calls, the frontend on one intra-op thread, as the Python consumer
  // does (w2vlab/runtime/_loaders.py, FRONTEND_THREADS): its small parallel regions stall on a busy machine.
  // encode is the module's own second stage, which pools as the artifact says (toolkit or masked).
  auto frontend = std::make_shared<torch::jit::Module>(module->attr("frontend").toModule());
  return {meta, [frontend, module](const at::Tensor& wave) {
    c10::IValue features;
    {
      OneThread scope;
      features = frontend->forward({wave});
    }
    auto outputs = features.toTuple()->elements();
    return module->get_method("encode")({outputs[0], outputs[1], wave}).toTensor();
  }};
}

// An AOTInductor package is a zip like the TorchScript archive: its metadata is extra/metadata.json.
std::string package_metadata(const fs::path& file) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(file.string());
    std::string name = std::string("extra/") + kMetadataFile;
    if (!reader.hasRecord(name)) return "";
    auto [data, size] = reader.getRecord(name);
    return std::string(static_cast<const char*>(data.get()), size);
  } catch (const c10::Error& e) {
    throw ArtifactError(file.string() + " is not a zip archive: " + e.what_without_backtrace());
  }
}

Encoder load_aoti(const fs::path& artifact) {
  fs::path file = resolve(artifact, kAotiFile);
  Metadata meta = check_metadata(package_metadata(file), file.string());
  std::shared_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  try {
    loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(file.string());
  } catch (const std::exception& e) {
    throw ArtifactError(file.string() + " is not an AOTInductor package: " + e.what());
  }
  auto compiled = loader->get_metadata();  // what export_aoti compiled in: the package's mode
  if (compiled["w2vlab_mode"] != "waveform")
    throw ArtifactError(file.string() + " is a w2vlab package for mode '" + compiled["w2vlab_mode"] +
                        "'; this program needs the waveform package, " + kAotiFile);
  if (meta.min_program_samples <= 0) throw ArtifactError(file.string() + " metadata lacks min_program_samples");
  const int64_t min_samples = meta.min_program_samples;
  // The program always takes (waveform [B, N], lengths [B]) and was captured for N >= min_samples:
  // pad shorter clips past their length, as w2vlab.runtime._entry.ProgramWaveformEntry does.
  return {meta, [loader, min_samples](const at::Tensor& wave) {
            auto lengths = torch::full({1}, wave.size(1), torch::kLong);
            at::Tensor input = wave.size(1) < min_samples
                                   ? torch::constant_pad_nd(wave, {0, min_samples - wave.size(1)})
                                   : wave;
            return loader->run({input, lengths})[0];
          }};
}

// ------------------------------------------------------------------ audio

// A RIFF/WAVE header that declares more bytes than the file holds is a cut-off copy:
// libsndfile would read what is there, w2vlab refuses it (w2vlab._audio._check_riff_complete).
void check_riff_complete(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char head[12] = {0};
  if (!in.read(reinterpret_cast<char*>(head), 12)) return;
  if (std::string(head, head + 4) != "RIFF" || std::string(head + 8, head + 12) != "WAVE") return;
  uint64_t declared = head[4] | (head[5] << 8) | (head[6] << 16) | (uint64_t(head[7]) << 24);
  uint64_t actual = fs::file_size(path);
  if (declared + 8 > actual && declared < 0x7FFF0000)
    throw AudioError("truncated: its RIFF header declares " + std::to_string(declared + 8) +
                     " bytes but the file has " + std::to_string(actual));
}

// Mono float32 at its own rate: libsndfile's float read (int PCM / 2^(bits-1)), then the
// channel mean in double, as numpy's mean(axis=1, dtype=float64).
std::vector<float> read_mono(const fs::path& path, int& rate) {
  if (!fs::exists(path)) throw AudioError("not found");
  if (fs::is_directory(path)) throw AudioError("is a directory; expected an audio file");
  check_riff_complete(path);
  SF_INFO info{};
  SNDFILE* sf = sf_open(path.c_str(), SFM_READ, &info);
  if (!sf) throw AudioError(std::string("cannot read as audio with libsndfile: ") + sf_strerror(nullptr));
  std::vector<float> interleaved(static_cast<size_t>(info.frames) * info.channels);
  sf_count_t got = sf_readf_float(sf, interleaved.data(), info.frames);
  sf_close(sf);
  if (got <= 0) throw AudioError("contains no audio samples");
  rate = info.samplerate;
  std::vector<float> mono(got);
  for (sf_count_t i = 0; i < got; ++i) {
    double sum = 0;
    for (int c = 0; c < info.channels; ++c) sum += interleaved[i * info.channels + c];
    mono[i] = static_cast<float>(sum / info.channels);
  }
  for (float x : mono)
    if (!std::isfinite(x)) throw AudioError("has NaN/Inf samples; expected finite audio");
  return mono;
}

// soxr HQ, float32 in and out, fed in 48000-output-sample chunks and flushed: python-soxr's
// soxr.resample(x, in_rate, out_rate, quality="HQ"), the call w2vlab._audio makes.
std::vector<float> resample(const std::vector<float>& x, double in_rate, double out_rate) {
  soxr_error_t err = nullptr;
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  soxr_t soxr = soxr_create(in_rate, out_rate, 1, &err, &io, &quality, nullptr);
  if (err) throw AudioError(std::string("soxr: ") + err);
  const size_t olen = static_cast<size_t>(x.size() * out_rate / in_rate) + 1;
  const size_t chunk = static_cast<size_t>(48000 * in_rate / out_rate);
  std::vector<float> y(olen);
  size_t pos = 0, done = 0;
  for (size_t i = 0; i < x.size() && !err; i += chunk) {
    err = soxr_process(soxr, &x[i], std::min(chunk, x.size() - i), nullptr, &y[pos], olen - pos, &done);
    pos += done;
  }
  if (!err) err = soxr_process(soxr, nullptr, 0, nullptr, &y[pos], olen - pos, &done);
  pos += done;
  soxr_delete(soxr);
  if (err) throw AudioError(std::string("soxr: ") + err);
  y.resize(pos);
  return y;
}

at::Tensor embed_file(const Encoder& encoder, const fs::path& path) {
  int rate = 0;
  std::vector<float> wave = read_mono(path, rate);
  if (rate != encoder.meta.sample_rate) wave = resample(wave, rate, encoder.meta.sample_rate);
  if (static_cast<int>(wave.size()) < encoder.meta.min_num_samples)
    throw AudioError("too short: " + std::to_string(wave.size()) + " samples at " +
                     std::to_string(encoder.meta.sample_rate) + " Hz, the artifact needs at least " +
                     std::to_string(encoder.meta.min_num_samples));
  at::Tensor input = torch::from_blob(wave.data(), {1, static_cast<int64_t>(wave.size())}, torch::kFloat32);
  c10::InferenceMode guard;
  at::Tensor embedding = encoder.embed(input).contiguous();  // [1, D]
  if (embedding.dim() != 2 || embedding.size(1) != encoder.meta.embedding_dim)
    throw AudioError("the artifact returned shape " + c10::str(embedding.sizes()) + ", expected [1, " +
                     std::to_string(encoder.meta.embedding_dim) + "]");
  if (!torch::isfinite(embedding).all().item<bool>()) throw AudioError("the embedding is not finite");
  return embedding.squeeze(0).clone();
}

// ------------------------------------------------------------------ output

std::string format_row(const at::Tensor& row) {
  std::ostringstream out;
  const float* v = row.data_ptr<float>();
  char buf[32];
  for (int64_t i = 0; i < row.numel(); ++i) {
    std::snprintf(buf, sizeof buf, "%.9g", v[i]);
    out << (i ? " " : "") << buf;
  }
  return out.str();
}

// NumPy .npy version 1.0, float32 [rows, dim], written beside OUT and renamed over it.
void write_npy(const fs::path& out, const std::vector<at::Tensor>& rows, int64_t dim) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows.size()) +
                       ", " + std::to_string(dim) + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  fs::path tmp = out;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    const uint16_t len = static_cast<uint16_t>(header.size());
    f.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
    f << header;
    for (const auto& row : rows) f.write(reinterpret_cast<const char*>(row.data_ptr<float>()), dim * sizeof(float));
    if (!f) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, out);
}

struct Args {
  bool aoti = false;
  std::optional<fs::path> npy;
  int threads = 0;
  fs::path artifact;
  std::vector<fs::path> audio;
};

const char* kUsage =
    "usage: w2vlab-embed [--aoti] [--npy OUT] [--threads N] ARTIFACT AUDIO [AUDIO...]\n"
    "  ARTIFACT  a w2vlab export directory, or its waveform file (.pt; .pt2 with --aoti)\n"
    "  --aoti    use the AOTInductor package instead of the TorchScript archive\n"
    "  --npy OUT write a float32 [files, dim] array; stdout lists path<TAB>row\n"
    "  --threads N  intra-op threads (default: torch's)\n";

Args parse(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") { std::cout << kUsage; std::exit(0); }
    else if (a == "--aoti") args.aoti = true;
    else if (a == "--npy") args.npy = value();
    else if (a == "--threads") {
      std::string v = value();
      try { args.threads = std::stoi(v); } catch (...) { args.threads = 0; }
      if (args.threads < 1) throw std::invalid_argument("--threads must be a positive integer, got '" + v + "'");
    } else if (a.rfind("--", 0) == 0) throw std::invalid_argument("unknown option " + a);
    else positional.push_back(a);
  }
  if (positional.size() < 2) throw std::invalid_argument("expected ARTIFACT and at least one AUDIO file");
  args.artifact = positional[0];
  args.audio.assign(positional.begin() + 1, positional.end());
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  Encoder encoder;
  try {
    args = parse(argc, argv);
    if (args.threads) at::set_num_threads(args.threads);
    encoder = args.aoti ? load_aoti(args.artifact) : load_torchscript(args.artifact);
  } catch (const std::exception& e) {
    std::cerr << "w2vlab-embed: " << e.what() << "\n" << kUsage;
    return 2;
  }
  std::vector<at::Tensor> rows;
  int failed = 0;
  for (const auto& path : args.audio) {
    try {
      at::Tensor embedding = embed_file(encoder, path);
      if (args.npy) std::cout << path.string() << '\t' << rows.size() << '\n';
      else std::cout << path.string() << '\t' << format_row(embedding) << '\n';
      rows.push_back(embedding);
    } catch (const AudioError& e) {
      std::cerr << "w2vlab-embed: " << path.string() << ": " << e.what() << '\n';
      ++failed;
    } catch (const c10::Error& e) {
      std::cerr << "w2vlab-embed: " << path.string() << ": " << e.what_without_backtrace() << '\n';
      ++failed;
    }
  }
  if (args.npy) {
    try {
      write_npy(*args.npy, rows, encoder.meta.embedding_dim);
    } catch (const std::exception& e) {
      std::cerr << "w2vlab-embed: " << e.what() << '\n';
      return 2;
    }
  }
  if (failed) std::cerr << "w2vlab-embed: " << failed << " of " << args.audio.size() << " files failed\n";
  return failed ? 1 : 0;
}
