#include "app/bench/FluxBench.h"

#include <filesystem>
#include <fstream>
#include <string_view>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/io/SafeTensors.h"
#include "core/models/Checkpoint.h"
#include "core/models/Weights.h"
#include "core/models/autoencoder/AutoEncoder.h"
#include "core/models/flux/FluxModel.h"
#include "core/models/flux/FluxTransformer.h"
#include "core/models/text/TextEncoders.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"
#include "core/sampling/Solver.h"

namespace flowscope::bench {
namespace {

using Tensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The E4M3 bytes nearest to `values` (clamped to +-448), as the shared fp8 files store them: the
// ascending table of the positive codes 0..126 searched, then the sign bit.
torch::Tensor toFloat8Bytes(const torch::Tensor& values) {
    const torch::Tensor table = core::float8E4M3Values().slice(0, 0, 127).to(values.device());
    const torch::Tensor magnitude = values.abs().to(torch::kFloat32).clamp_max(448.0f).contiguous();
    const torch::Tensor above = torch::bucketize(magnitude, table).clamp(1, 126);  // the first code >= the value
    const torch::Tensor below = above - 1;
    const auto at = [&](const torch::Tensor& codes) { return table.index_select(0, codes.flatten()).view_as(magnitude); };
    const torch::Tensor code = torch::where((magnitude - at(below)) < (at(above) - magnitude), below, above);
    return (code + values.lt(0).to(torch::kLong) * 128).to(torch::kUInt8);
}

// A tensor as a file stores it: `dtype`, or for kUInt8 as the fp8 files do (matrices in E4M3
// bytes, vectors in bfloat16).
torch::Tensor stored(const torch::Tensor& values, torch::ScalarType dtype) {
    if (dtype != torch::kUInt8) return values.to(dtype);
    return values.dim() >= 2 ? toFloat8Bytes(values) : values.to(torch::kBFloat16);
}

// Writes `tensors`; kUInt8 ones as F8_E4M3 (LibTorch 1.13 has no float8 type to name them).
void writeTensors(const std::string& path, const Tensors& tensors) {
    std::string bytes = core::encodeSafeTensors(tensors);
    uint64_t length = 0;
    for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(bytes[size_t(i)])) << (8 * i);
    std::string header = bytes.substr(8, length);
    const std::string u8 = "\"dtype\":\"U8\"";
    bool changed = false;
    for (size_t at = header.find(u8); at != std::string::npos; at = header.find(u8, at)) {
        header.replace(at, u8.size(), "\"dtype\":\"F8_E4M3\"");
        changed = true;
    }
    if (!changed) {
        core::writeSafeTensors(path, tensors);
        return;
    }
    while (!header.empty() && header.back() == ' ') header.pop_back();
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
    std::ofstream(path, std::ios::binary) << out << header << std::string_view(bytes).substr(8 + length);
}

// Random weights drawn on `device` (a GPU draws the 12B shape in moments), stored as `dtype`.
void linear(Tensors& out, const std::string& key, int64_t in, int64_t outWidth, torch::ScalarType dtype, bool bias = true,
            torch::Device device = torch::kCPU) {
    const auto on = torch::TensorOptions().device(device);
    out.emplace_back(key + ".weight", stored(torch::randn({outWidth, in}, on) / std::sqrt(double(in)), dtype));
    if (bias) out.emplace_back(key + ".bias", stored(torch::randn({outWidth}, on) * 0.02, dtype));
}

void norm(Tensors& out, const std::string& key, int64_t width, torch::ScalarType dtype, bool bias) {
    out.emplace_back(key + ".weight", torch::ones({width}, dtype));
    if (bias) out.emplace_back(key + ".bias", torch::zeros({width}, dtype));
}

void conv(Tensors& out, const std::string& key, int64_t in, int64_t outChannels, int64_t kernel, torch::ScalarType dtype) {
    out.emplace_back(key + ".weight", (torch::randn({outChannels, in, kernel, kernel}) / std::sqrt(double(in * kernel * kernel))).to(dtype));
    out.emplace_back(key + ".bias", torch::zeros({outChannels}, dtype));
}

void resBlock(Tensors& out, const std::string& key, int64_t in, int64_t channels, torch::ScalarType dtype) {
    norm(out, key + ".norm1", in, dtype, true);
    conv(out, key + ".conv1", in, channels, 3, dtype);
    norm(out, key + ".norm2", channels, dtype, true);
    conv(out, key + ".conv2", channels, channels, 3, dtype);
    if (in != channels) conv(out, key + ".nin_shortcut", in, channels, 1, dtype);
}

// The FLUX.1 decoder's published shape: 128 channels, multipliers 1, 2, 4, 4, 2 blocks a level.
void writeRandomDecoder(const std::string& path, torch::ScalarType dtype) {
    Tensors out;
    const int64_t mult[] = {1, 2, 4, 4};
    int64_t channels = 512;
    conv(out, "decoder.conv_in", 16, channels, 3, dtype);
    resBlock(out, "decoder.mid.block_1", channels, channels, dtype);
    norm(out, "decoder.mid.attn_1.norm", channels, dtype, true);
    for (const char* name : {"q", "k", "v", "proj_out"}) conv(out, std::string("decoder.mid.attn_1.") + name, channels, channels, 1, dtype);
    resBlock(out, "decoder.mid.block_2", channels, channels, dtype);
    for (int level = 3; level >= 0; --level) {
        const int64_t width = 128 * mult[level];
        for (int i = 0; i < 3; ++i) {
            resBlock(out, "decoder.up." + std::to_string(level) + ".block." + std::to_string(i), channels, width, dtype);
            channels = width;
        }
        if (level > 0) conv(out, "decoder.up." + std::to_string(level) + ".upsample.conv", channels, channels, 3, dtype);
    }
    norm(out, "decoder.norm_out", channels, dtype, true);
    conv(out, "decoder.conv_out", channels, 3, 3, dtype);
    core::writeSafeTensors(path, out);
}

// CLIP-L's published shape (768 wide, 12 layers) and a T5 encoder of `width` and `layers`.
void writeRandomEncoders(const std::string& clipPath, const std::string& t5Path, int64_t t5Width, int t5Layers,
                         torch::ScalarType dtype) {
    Tensors clip;
    clip.emplace_back("text_model.embeddings.token_embedding.weight", (torch::randn({49408, 768}) * 0.02).to(dtype));
    clip.emplace_back("text_model.embeddings.position_embedding.weight", (torch::randn({77, 768}) * 0.02).to(dtype));
    for (int i = 0; i < 12; ++i) {
        const std::string layer = "text_model.encoder.layers." + std::to_string(i) + ".";
        norm(clip, layer + "layer_norm1", 768, dtype, true);
        for (const char* name : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(clip, layer + "self_attn." + name, 768, 768, dtype);
        norm(clip, layer + "layer_norm2", 768, dtype, true);
        linear(clip, layer + "mlp.fc1", 768, 3072, dtype);
        linear(clip, layer + "mlp.fc2", 3072, 768, dtype);
    }
    norm(clip, "text_model.final_layer_norm", 768, dtype, true);
    core::writeSafeTensors(clipPath, clip);
    Tensors t5;
    const int64_t heads = t5Width / 64;
    t5.emplace_back("shared.weight", torch::randn({32128, t5Width}).to(dtype));
    t5.emplace_back("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", torch::randn({32, heads}).to(dtype));
    for (int i = 0; i < t5Layers; ++i) {
        const std::string block = "encoder.block." + std::to_string(i) + ".layer.";
        norm(t5, block + "0.layer_norm", t5Width, dtype, false);
        for (const char* name : {"q", "k", "v", "o"}) linear(t5, block + "0.SelfAttention." + name, t5Width, t5Width, dtype, false);
        norm(t5, block + "1.layer_norm", t5Width, dtype, false);
        linear(t5, block + "1.DenseReluDense.wi_0", t5Width, 2 * t5Width, dtype, false);
        linear(t5, block + "1.DenseReluDense.wi_1", t5Width, 2 * t5Width, dtype, false);
        linear(t5, block + "1.DenseReluDense.wo", 2 * t5Width, t5Width, dtype, false);
    }
    norm(t5, "encoder.final_layer_norm", t5Width, dtype, false);
    core::writeSafeTensors(t5Path, t5);
}

// The real FLUX.1 shape on a GPU; on the CPU a reduced one that runs in seconds, with the real
// head width and RoPE.
FluxShape benchShape(bool gpu) {
    FluxShape shape;
    if (!gpu) {
        shape.hidden = 512;
        shape.mlp = 2048;
        shape.context = 512;
        shape.doubleBlocks = 2;
        shape.singleBlocks = 4;
    }
    return shape;
}

}  // namespace

int64_t FluxShape::parameters() const {
    const int64_t h = hidden;
    const int64_t block = 2 * (6 * h * h + 3 * h * h + h * h + 2 * h * mlp);
    const int64_t single = 3 * h * h + h * (3 * h + mlp) + (h + mlp) * h;
    return doubleBlocks * block + singleBlocks * single + 64 * h + 256 * h + 2 * h * h + pooled * h + context * h + 2 * h * h + 64 * h;
}

void writeRandomFlux(const std::string& path, const FluxShape& s, torch::ScalarType dtype, torch::Device device) {
    const auto linear = [&](Tensors& tensors, const std::string& key, int64_t in, int64_t width, torch::ScalarType type) {
        bench::linear(tensors, key, in, width, type, true, device);
    };
    Tensors out;
    const int64_t h = s.hidden;
    linear(out, "img_in", 64, h, dtype);
    linear(out, "time_in.in_layer", 256, h, dtype);
    linear(out, "time_in.out_layer", h, h, dtype);
    linear(out, "vector_in.in_layer", s.pooled, h, dtype);
    linear(out, "vector_in.out_layer", h, h, dtype);
    if (s.guidance) {
        linear(out, "guidance_in.in_layer", 256, h, dtype);
        linear(out, "guidance_in.out_layer", h, h, dtype);
    }
    linear(out, "txt_in", s.context, h, dtype);
    for (int i = 0; i < s.doubleBlocks; ++i) {
        for (const std::string stream : {"img", "txt"}) {
            const std::string key = "double_blocks." + std::to_string(i) + "." + stream;
            linear(out, key + "_mod.lin", h, 6 * h, dtype);
            linear(out, key + "_attn.qkv", h, 3 * h, dtype);
            out.emplace_back(key + "_attn.norm.query_norm.scale", stored(torch::ones({s.headDim}), dtype));
            out.emplace_back(key + "_attn.norm.key_norm.scale", stored(torch::ones({s.headDim}), dtype));
            linear(out, key + "_attn.proj", h, h, dtype);
            linear(out, key + "_mlp.0", h, s.mlp, dtype);
            linear(out, key + "_mlp.2", s.mlp, h, dtype);
        }
    }
    for (int i = 0; i < s.singleBlocks; ++i) {
        const std::string key = "single_blocks." + std::to_string(i) + ".";
        linear(out, key + "linear1", h, 3 * h + s.mlp, dtype);
        linear(out, key + "linear2", h + s.mlp, h, dtype);
        out.emplace_back(key + "norm.query_norm.scale", stored(torch::ones({s.headDim}), dtype));
        out.emplace_back(key + "norm.key_norm.scale", stored(torch::ones({s.headDim}), dtype));
        linear(out, key + "modulation.lin", h, 3 * h, dtype);
    }
    linear(out, "final_layer.adaLN_modulation.1", h, 2 * h, dtype);
    linear(out, "final_layer.linear", h, 64, dtype);
    writeTensors(path, out);
}

FluxTimes benchFlux(const std::string& directory, torch::Device device, int repeats,
                    const std::function<double(const std::function<void()>&, int)>& timer) {
    namespace fs = std::filesystem;
    c10::InferenceMode inference;
    const bool gpu = device.is_cuda();
    const FluxShape shape = benchShape(gpu);
    FluxTimes times;
    times.side = gpu ? 1024 : 256;
    times.shape = (gpu ? "FLUX.1 [schnell] 12B shape, bfloat16" : "FLUX.1 shape at width 512, 2+4 blocks, float32") +
                  std::string(", ") + std::to_string(times.side) + "x" + std::to_string(times.side);
    const std::string folder = directory + "/flux";
    fs::create_directories(folder + "/text_encoder");
    fs::create_directories(folder + "/text_encoder_2");
    const torch::ScalarType stored = gpu ? torch::kBFloat16 : torch::kFloat32;
    torch::manual_seed(0);
    writeRandomFlux(folder + "/flux1-schnell.safetensors", shape, stored, device);
    writeRandomDecoder(folder + "/ae.safetensors", stored);
    writeRandomEncoders(folder + "/text_encoder/model.safetensors", folder + "/text_encoder_2/model.safetensors",
                        shape.context, gpu ? 24 : 4, stored);
    const core::CheckpointLayout layout = core::findCheckpoint(folder, {});

    // The engine: 4 Euler steps on a cached prompt (its ids given, no tokenizer here), without
    // the final decode; against the transformer's forward pass on the same inputs.
    core::flux::FluxModel model(layout);
    model.prepare(device, torch::kFloat32);
    const int64_t latent = times.side / 8;
    const torch::Tensor txt = torch::randn({1, 256, shape.context});
    const torch::Tensor vec = torch::randn({1, shape.pooled});
    const torch::Tensor x = torch::randn({1, 16, latent, latent}).to(device);
    const torch::Tensor sigma = torch::full({1}, 0.5, torch::TensorOptions().device(device));
    model.forwardRaw(x, sigma, txt, vec, 3.5, nullptr);  // loads the transformer
    times.forwardMs = timer([&] { model.forwardRaw(x, sigma, txt, vec, 3.5, nullptr); }, repeats);
    model.setConditioning(txt, vec, times.side, times.side);
    const auto path = core::makePath("linear");
    const auto solver = core::makeSolver("euler");
    constexpr int kSteps = 4;
    const auto grid = core::makeTimeGrid(core::parseSchedule("shift:1"), *path, kSteps, 1.0, 1.0);
    const torch::Tensor start = torch::randn({1, 16, latent, latent}).to(device);
    times.engineStepMs = timer([&] {
        core::SamplingOptions options;
        core::runSampler(model, *path, *solver, grid, start, nullptr, options);
    }, std::max(1, repeats / 3)) / kSteps;

    const core::Weights clipWeights(layout.clipL.files, layout.clipL.prefix, gpu ? torch::kBFloat16 : torch::kFloat32, device);
    const core::ClipTextModel clip(clipWeights, core::ClipTextModel::Activation::QuickGelu);
    const torch::Tensor clipIds = torch::randint(0, 49406, {1, 77}, torch::kInt64).to(device);
    times.clipMs = timer([&] { clip.forward(clipIds, 49407); }, repeats);
    const core::T5Encoder t5(core::Weights(layout.t5.files, layout.t5.prefix, gpu ? torch::kBFloat16 : torch::kFloat32, device));
    const torch::Tensor t5Ids = torch::randint(0, 32128, {1, 256}, torch::kInt64).to(device);
    times.t5Ms = timer([&] { t5.forward(t5Ids); }, repeats);
    const core::AutoEncoder decoder(core::Weights(layout.autoencoder.files, layout.autoencoder.prefix,
                                                  gpu ? torch::kBFloat16 : torch::kFloat32, device),
                                    0.1159, 0.3611, false);
    times.decodeMs = timer([&] { decoder.decode(x); }, std::max(1, repeats / 3));
    return times;
}

void benchFloat8(const std::string& directory, torch::Device device, int repeats,
                 const std::function<double(const std::function<void()>&, int)>& timer, FluxTimes& times) {
    c10::InferenceMode inference;
    const bool gpu = device.is_cuda();
    const FluxShape shape = benchShape(gpu);
    // The bf16 checkpoint of benchFlux makes room for this one (24 GB at the real shape).
    std::filesystem::remove_all(directory + "/flux");
    const std::string path = directory + "/flux-fp8/flux1-schnell-fp8.safetensors";
    std::filesystem::create_directories(directory + "/flux-fp8");
    torch::manual_seed(0);
    writeRandomFlux(path, shape, torch::kUInt8, device);
    const auto files = core::WeightFiles::open({path});
    const torch::ScalarType compute = gpu ? torch::kBFloat16 : torch::kFloat32;
    const int64_t latent = times.side / 8;
    const torch::Tensor x = torch::randn({1, 16, latent, latent}).to(device);
    const torch::Tensor tokens = core::flux::FluxTransformer::pack(x);
    const torch::Tensor ids = core::flux::FluxTransformer::imageIds(latent, latent, device);
    const torch::Tensor txt = torch::randn({1, 256, shape.context}).to(device);
    const torch::Tensor vec = torch::randn({1, shape.pooled}).to(device);
    const torch::Tensor sigma = torch::full({1}, 0.5, torch::TensorOptions().device(device));
    torch::Tensor widenedOut;
    {
        const core::flux::FluxTransformer widened(core::Weights(files, "", compute, device));
        widenedOut = widened.forward(tokens, ids, txt, vec, sigma, {});
        times.float8WidenedMs = timer([&] { widened.forward(tokens, ids, txt, vec, sigma, {}); }, repeats);
    }
    const core::flux::FluxTransformer packed(core::Weights(files, "", compute, device, nullptr, /*packFloat8=*/true));
    const torch::Tensor packedOut = packed.forward(tokens, ids, txt, vec, sigma, {});
    times.float8PackedMs = timer([&] { packed.forward(tokens, ids, txt, vec, sigma, {}); }, repeats);
    times.float8Difference = (packedOut.to(torch::kFloat32) - widenedOut.to(torch::kFloat32)).abs().max().item<double>();
    const core::Weights counted(files, "", compute, torch::kCPU);
    times.float8Parameters = double(counted.float8Parameters());
    times.parameters = double(counted.parameters());
}

}  // namespace flowscope::bench
