#include "core/models/FlowNet.h"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

#include "core/sampling/Device.h"

namespace flowscope::core {
namespace {

namespace nn = torch::nn;

constexpr int64_t kTimeFeatures = 64;

// Sinusoidal features of 1000 t (as DDPM's timestep embedding), [B] -> [B, kTimeFeatures].
torch::Tensor timeFeatures(const torch::Tensor& t) {
    const int64_t half = kTimeFeatures / 2;
    const auto frequencies =
        torch::exp(-std::log(10000.0) * torch::arange(half, t.options()) / static_cast<double>(half));
    const auto angles = (t * 1000.0).unsqueeze(1) * frequencies.unsqueeze(0);
    return torch::cat({angles.sin(), angles.cos()}, 1);
}

// The class embedding's rows: the null class (-1) at 0, class c at c + 1. Undefined labels are
// every row null; an unconditional network (no table) takes none.
torch::Tensor classEmbedding(nn::Embedding& table, const torch::Tensor& labels, int64_t rows, const torch::Device& device) {
    if (!table) {
        TORCH_CHECK(!labels.defined(), "internal: an unconditional network was given class labels");
        return {};
    }
    const torch::Tensor index = labels.defined() ? labels.to(device, torch::kInt64) + 1
                                                 : torch::zeros({rows}, torch::TensorOptions().device(device).dtype(torch::kInt64));
    return table(index);
}

int64_t groupsFor(int64_t channels) { return channels % 8 == 0 ? 8 : (channels % 4 == 0 ? 4 : 1); }

class MlpNet final : public FlowNet {
public:
    explicit MlpNet(const Architecture& architecture) : FlowNet(architecture) {
        const int64_t dimension = architecture.sampleShape.at(0);
        m_time = register_module("time", nn::Linear(kTimeFeatures, architecture.width));
        m_input = register_module("input", nn::Linear(dimension, architecture.width));
        for (int64_t i = 0; i < architecture.depth; ++i) {
            m_hidden.push_back(register_module("hidden" + std::to_string(i),
                                               nn::Linear(architecture.width, architecture.width)));
        }
        m_output = register_module("output", nn::Linear(architecture.width, dimension));
        if (architecture.classes > 0) {
            m_class = register_module("class", nn::Embedding(architecture.classes + 1, architecture.width));
        }
    }

    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) override {
        torch::Tensor h = m_input(x) + m_time(timeFeatures(t));
        if (m_class) h = h + classEmbedding(m_class, labels, x.size(0), x.device());
        h = torch::silu(h);
        for (auto& layer : m_hidden) h = torch::silu(layer(h));
        return m_output(h);
    }

private:
    nn::Linear m_time{nullptr}, m_input{nullptr}, m_output{nullptr};
    std::vector<nn::Linear> m_hidden;
    nn::Embedding m_class{nullptr};
};

// Group norm, SiLU, 3x3 convolution, twice, with the time embedding added in between.
class ResBlockImpl : public nn::Module {
public:
    ResBlockImpl(int64_t in, int64_t out, int64_t embedding) {
        m_norm1 = register_module("norm1", nn::GroupNorm(groupsFor(in), in));
        m_conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)));
        m_time = register_module("time", nn::Linear(embedding, out));
        m_norm2 = register_module("norm2", nn::GroupNorm(groupsFor(out), out));
        m_conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1)));
        if (in != out) m_skip = register_module("skip", nn::Conv2d(nn::Conv2dOptions(in, out, 1)));
    }

    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& embedding) {
        torch::Tensor h = m_conv1(torch::silu(m_norm1(x)));
        h = h + m_time(embedding).unsqueeze(-1).unsqueeze(-1);
        h = m_conv2(torch::silu(m_norm2(h)));
        return h + (m_skip ? m_skip(x) : x);
    }

private:
    nn::GroupNorm m_norm1{nullptr}, m_norm2{nullptr};
    nn::Conv2d m_conv1{nullptr}, m_conv2{nullptr}, m_skip{nullptr};
    nn::Linear m_time{nullptr};
};
TORCH_MODULE(ResBlock);

class UNet final : public FlowNet {
public:
    explicit UNet(const Architecture& architecture) : FlowNet(architecture) {
        const int64_t channels = architecture.sampleShape.at(0);
        const int64_t width = architecture.width;
        const int64_t embedding = 4 * width;
        m_time1 = register_module("time1", nn::Linear(kTimeFeatures, embedding));
        m_time2 = register_module("time2", nn::Linear(embedding, embedding));
        m_input = register_module("input", nn::Conv2d(nn::Conv2dOptions(channels, width, 3).padding(1)));
        int64_t current = width;
        for (int64_t level = 0; level < architecture.depth; ++level) {
            const int64_t next = current * 2;
            m_down.push_back(register_module("down" + std::to_string(level), ResBlock(current, current, embedding)));
            m_downsample.push_back(register_module("downsample" + std::to_string(level),
                                                   nn::Conv2d(nn::Conv2dOptions(current, next, 3).stride(2).padding(1))));
            current = next;
        }
        m_middle = register_module("middle", ResBlock(current, current, embedding));
        for (int64_t level = architecture.depth - 1; level >= 0; --level) {
            const int64_t previous = current / 2;
            m_upsample.push_back(register_module("upsample" + std::to_string(level),
                                                 nn::Conv2d(nn::Conv2dOptions(current, previous, 3).padding(1))));
            m_up.push_back(register_module("up" + std::to_string(level), ResBlock(2 * previous, previous, embedding)));
            current = previous;
        }
        m_outNorm = register_module("out_norm", nn::GroupNorm(groupsFor(width), width));
        m_output = register_module("output", nn::Conv2d(nn::Conv2dOptions(width, channels, 3).padding(1)));
        if (architecture.classes > 0) {
            m_class = register_module("class", nn::Embedding(architecture.classes + 1, embedding));
        }
    }

    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) override {
        namespace F = torch::nn::functional;
        torch::Tensor embedding = m_time2(torch::silu(m_time1(timeFeatures(t))));
        if (m_class) embedding = embedding + classEmbedding(m_class, labels, x.size(0), x.device());
        torch::Tensor h = m_input(x);
        std::vector<torch::Tensor> skips;
        for (size_t level = 0; level < m_down.size(); ++level) {
            h = m_down[level](h, embedding);
            skips.push_back(h);
            h = m_downsample[level](h);
        }
        h = m_middle(h, embedding);
        for (size_t i = 0; i < m_up.size(); ++i) {
            const torch::Tensor& skip = skips[skips.size() - 1 - i];
            h = F::interpolate(h, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{skip.size(2), skip.size(3)})
                                      .mode(torch::kNearest));
            h = m_up[i](torch::cat({m_upsample[i](h), skip}, 1), embedding);
        }
        return m_output(torch::silu(m_outNorm(h)));
    }

private:
    nn::Linear m_time1{nullptr}, m_time2{nullptr};
    nn::Conv2d m_input{nullptr}, m_output{nullptr};
    nn::GroupNorm m_outNorm{nullptr};
    std::vector<ResBlock> m_down, m_up;
    std::vector<nn::Conv2d> m_downsample, m_upsample;
    ResBlock m_middle{nullptr};
    nn::Embedding m_class{nullptr};
};

}  // namespace

int64_t FlowNet::parameterCount() const {
    int64_t count = 0;
    for (const auto& parameter : parameters()) count += parameter.numel();
    return count;
}

int64_t parameterCountOf(const Architecture& architecture) {
    architecture.check();
    const auto linear = [](int64_t in, int64_t out) { return in * out + out; };
    const auto conv = [](int64_t in, int64_t out, int64_t kernel) { return in * out * kernel * kernel + out; };
    const int64_t width = architecture.width;
    if (architecture.kind == "mlp") {
        const int64_t dimension = architecture.sampleShape.at(0);
        return linear(kTimeFeatures, width) + linear(dimension, width) + architecture.depth * linear(width, width) +
               linear(width, dimension) + (architecture.classes > 0 ? (architecture.classes + 1) * width : 0);
    }
    const int64_t embedding = 4 * width;
    const auto resBlock = [&](int64_t in, int64_t out) {
        return 2 * in + conv(in, out, 3) + linear(embedding, out) + 2 * out + conv(out, out, 3) +
               (in != out ? conv(in, out, 1) : 0);
    };
    const int64_t channels = architecture.sampleShape.at(0);
    int64_t count = linear(kTimeFeatures, embedding) + linear(embedding, embedding) + conv(channels, width, 3);
    int64_t current = width;
    for (int64_t level = 0; level < architecture.depth; ++level) {
        count += resBlock(current, current) + conv(current, 2 * current, 3);
        current *= 2;
    }
    count += resBlock(current, current);
    for (int64_t level = 0; level < architecture.depth; ++level) {
        count += conv(current, current / 2, 3) + resBlock(current, current / 2);
        current /= 2;
    }
    if (architecture.classes > 0) count += (architecture.classes + 1) * embedding;
    return count + 2 * width + conv(width, channels, 3);
}

std::shared_ptr<FlowNet> makeFlowNet(const Architecture& architecture, uint64_t seed) {
    checkFitsInMemory(4.0 * double(parameterCountOf(architecture)), 0.5,
                      "a network of architecture " + architecture.toJson() + " (" +
                          std::to_string(parameterCountOf(architecture)) + " parameters)",
                      "choose a smaller width or depth");
    // Module initialization draws from the default generator: seed it for this network, then put
    // its state back. (Not thread-safe; the engine's worker is the only thread that trains.)
    auto generator = at::detail::getDefaultCPUGenerator();
    const auto saved = generator.get_state();
    generator.set_current_seed(seed);
    std::shared_ptr<FlowNet> network;
    if (architecture.kind == "mlp") {
        network = std::make_shared<MlpNet>(architecture);
    } else {
        network = std::make_shared<UNet>(architecture);
    }
    generator.set_state(saved);
    return network;
}

}  // namespace flowscope::core
