#include "core/models/text/TextEncoders.h"

#include <cmath>

#include <torch/torch.h>

namespace flowscope::core {
namespace {

constexpr int64_t kClipHeadWidth = 64;

}  // namespace

ClipTextModel::ClipTextModel(const Weights& root, Activation activation) : m_quickGelu(activation == Activation::QuickGelu) {
    const Weights w = root.sub("text_model.");
    m_tokenEmbedding = layers::Embedding::load(w, "embeddings.token_embedding.weight");
    m_width = m_tokenEmbedding.width();
    if (m_width % kClipHeadWidth != 0) {
        throw CheckpointError("the CLIP text model under '" + root.prefix() + "' is " + std::to_string(m_width) +
                              " wide, not a multiple of CLIP's 64-wide heads");
    }
    m_heads = m_width / kClipHeadWidth;
    m_positionEmbedding = layers::Embedding::load(w, "embeddings.position_embedding.weight", {-1, m_width});
    const int count = w.count("encoder.layers.");
    if (count == 0) throw CheckpointError("the CLIP text model under '" + root.prefix() + "' has no encoder.layers");
    for (int i = 0; i < count; ++i) {
        const Weights lw = w.sub("encoder.layers." + std::to_string(i) + ".");
        Layer layer;
        layer.norm1 = layers::LayerNorm::load(lw, "layer_norm1", m_width, 1e-5);
        layer.q = layers::Linear::load(lw, "self_attn.q_proj", m_width, m_width);
        layer.k = layers::Linear::load(lw, "self_attn.k_proj", m_width, m_width);
        layer.v = layers::Linear::load(lw, "self_attn.v_proj", m_width, m_width);
        layer.out = layers::Linear::load(lw, "self_attn.out_proj", m_width, m_width);
        layer.norm2 = layers::LayerNorm::load(lw, "layer_norm2", m_width, 1e-5);
        layer.fc1 = layers::Linear::load(lw, "mlp.fc1", m_width, -1);
        layer.fc2 = layers::Linear::load(lw, "mlp.fc2", layer.fc1.out(), m_width);
        m_layers.push_back(std::move(layer));
    }
    m_finalNorm = layers::LayerNorm::load(w, "final_layer_norm", m_width, 1e-5);
    if (root.has("text_projection.weight")) m_projection = layers::Linear::load(root, "text_projection", m_width, -1, false);
}

ClipTextModel::Output ClipTextModel::forward(const torch::Tensor& ids, int64_t endId, bool project) const {
    const int64_t batch = ids.size(0), length = ids.size(1);
    if (length > m_positionEmbedding.count()) {
        throw std::invalid_argument("CLIP takes at most " + std::to_string(m_positionEmbedding.count()) + " tokens");
    }
    const torch::Tensor tokens = ids.to(m_tokenEmbedding.device(), torch::kInt64);
    torch::Tensor h = m_tokenEmbedding.rows(tokens) +
                      m_positionEmbedding.rows(torch::arange(length, tokens.options())).unsqueeze(0);
    const double scale = 1.0 / std::sqrt(double(kClipHeadWidth));
    auto heads = [&](const torch::Tensor& t) { return t.reshape({batch, length, m_heads, kClipHeadWidth}).transpose(1, 2); };
    Output out;
    for (size_t i = 0; i < m_layers.size(); ++i) {
        const Layer& layer = m_layers[i];
        if (i + 1 == m_layers.size()) out.penultimate = h;
        const torch::Tensor x = layer.norm1(h);
        const torch::Tensor attended = layers::attention(heads(layer.q(x)), heads(layer.k(x)), heads(layer.v(x)), scale, {}, true);
        h = h + layer.out(attended.transpose(1, 2).reshape({batch, length, m_width}));
        torch::Tensor inner = layer.fc1(layer.norm2(h));
        inner = m_quickGelu ? inner * torch::sigmoid(1.702 * inner) : torch::gelu(inner);
        h = h + layer.fc2(inner);
    }
    out.hidden = m_finalNorm(h);
    // The first end token of each row (the last position where there is none).
    const torch::Tensor isEnd = tokens.eq(endId).to(torch::kInt64);
    const torch::Tensor first = torch::where(isEnd.sum(1) > 0, isEnd.argmax(1), torch::full({batch}, length - 1, isEnd.options()));
    out.pooled = out.hidden.index({torch::arange(batch, first.options()), first});
    if (project && hasProjection()) out.pooled = m_projection(out.pooled);
    return out;
}

int64_t T5Encoder::bucket(int64_t relative, int64_t buckets, int64_t maxDistance) {
    const int64_t half = buckets / 2;
    int64_t result = relative > 0 ? half : 0;
    const int64_t distance = std::abs(relative);
    const int64_t exact = half / 2;
    if (distance < exact) return result + distance;
    // In float32, as the reference computes it (the truncation is sensitive at exact powers).
    const float logRatio = std::log(float(distance) / float(exact)) / float(std::log(double(maxDistance) / double(exact)));
    const int64_t large = exact + int64_t(logRatio * float(half - exact));
    return result + std::min(large, half - 1);
}

T5Encoder::T5Encoder(const Weights& w) {
    // The embedding is tied: files keep it as shared.weight, encoder.embed_tokens.weight or both.
    const std::string embeddingKey = w.has("shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
    m_embedding = layers::Embedding::load(w, embeddingKey);
    m_width = m_embedding.width();
    const std::string biasKey = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    m_relativeBias = layers::Embedding::load(w, biasKey, {-1, -1});
    if (m_relativeBias.count() != 32) {
        throw CheckpointError("the tensor '" + w.prefix() + biasKey + "' has " + std::to_string(m_relativeBias.count()) +
                              " buckets where T5 has 32");
    }
    m_heads = m_relativeBias.width();
    m_inner = w.size("encoder.block.0.layer.0.SelfAttention.q.weight", 0);
    if (m_inner % m_heads != 0) {
        throw CheckpointError("T5's attention is " + std::to_string(m_inner) + " wide, which its " + std::to_string(m_heads) +
                              " heads do not divide");
    }
    const int count = w.count("encoder.block.");
    for (int i = 0; i < count; ++i) {
        const Weights bw = w.sub("encoder.block." + std::to_string(i) + ".layer.");
        Block b;
        b.attentionNorm = bw.get("0.layer_norm.weight", {m_width});
        b.q = layers::Linear::load(bw, "0.SelfAttention.q", m_width, m_inner, false);
        b.k = layers::Linear::load(bw, "0.SelfAttention.k", m_width, m_inner, false);
        b.v = layers::Linear::load(bw, "0.SelfAttention.v", m_width, m_inner, false);
        b.o = layers::Linear::load(bw, "0.SelfAttention.o", m_inner, m_width, false);
        b.feedNorm = bw.get("1.layer_norm.weight", {m_width});
        b.wi0 = layers::Linear::load(bw, "1.DenseReluDense.wi_0", m_width, -1, false);
        b.wi1 = layers::Linear::load(bw, "1.DenseReluDense.wi_1", m_width, b.wi0.out(), false);
        b.wo = layers::Linear::load(bw, "1.DenseReluDense.wo", b.wi0.out(), m_width, false);
        m_blocks.push_back(std::move(b));
    }
    if (m_blocks.empty()) throw CheckpointError("the T5 encoder under '" + w.prefix() + "' has no encoder.block");
    m_finalNorm = w.get("encoder.final_layer_norm.weight", {m_width});
}

int64_t T5Encoder::heldBytes() const {
    int64_t bytes = int64_t(m_embedding.weight.nbytes() + m_relativeBias.weight.nbytes() + m_finalNorm.nbytes());
    for (const Block& b : m_blocks) {
        bytes += int64_t(b.attentionNorm.nbytes() + b.feedNorm.nbytes());
        for (const layers::Linear* layer : {&b.q, &b.k, &b.v, &b.o, &b.wi0, &b.wi1, &b.wo}) bytes += int64_t(layer->weight.nbytes());
    }
    return bytes;
}

torch::Tensor T5Encoder::forward(const torch::Tensor& ids) const {
    const int64_t batch = ids.size(0), length = ids.size(1);
    const torch::Tensor tokens = ids.to(m_embedding.device(), torch::kInt64);
    if (tokens.numel() > 0 && (tokens.min().item<int64_t>() < 0 || tokens.max().item<int64_t>() >= m_embedding.count())) {
        throw std::invalid_argument("a token id lies outside T5's vocabulary of " + std::to_string(m_embedding.count()));
    }
    torch::Tensor h = m_embedding.rows(tokens);
    // The position bias [1, heads, L, L] from block 0's table, shared by every block.
    std::vector<int64_t> buckets(size_t(length * length));
    for (int64_t q = 0; q < length; ++q) {
        for (int64_t k = 0; k < length; ++k) buckets[size_t(q * length + k)] = bucket(k - q);
    }
    const torch::Tensor index = torch::tensor(buckets, torch::kInt64).to(m_relativeBias.device());
    const torch::Tensor bias = m_relativeBias.rows(index).reshape({length, length, m_heads}).permute({2, 0, 1}).unsqueeze(0);
    const int64_t headWidth = m_inner / m_heads;
    auto heads = [&](const torch::Tensor& t) { return t.reshape({batch, length, m_heads, headWidth}).transpose(1, 2); };
    for (const Block& b : m_blocks) {
        const torch::Tensor x = layers::rmsNorm(h, b.attentionNorm, 1e-6);
        const torch::Tensor attended =
            layers::attention(heads(b.q(x)), heads(b.k(x)), heads(b.v(x)), 1.0, bias);
        h = h + b.o(attended.transpose(1, 2).reshape({batch, length, m_inner}));
        const torch::Tensor y = layers::rmsNorm(h, b.feedNorm, 1e-6);
        h = h + b.wo(layers::geluTanh(b.wi0(y)) * b.wi1(y));
    }
    return layers::rmsNorm(h, m_finalNorm, 1e-6);
}

}  // namespace flowscope::core
