#include "core/sampling/Sampler.h"

#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/sampling/CudaGraph.h"
#include "core/sampling/DeviceTransfer.h"
#include "core/sampling/Parameterization.h"

namespace flowscope::core {
namespace {

// Deferred checks (GPU): how many steps may pass between two looks at the state for NaN or Inf.
constexpr int kCheckInterval = 64;

torch::Tensor perSampleDot(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.reshape({a.size(0), -1}) * b.reshape({b.size(0), -1})).sum(1);
}

}  // namespace

torch::Tensor perSampleNorm(const torch::Tensor& x) {
    if (x.dim() < 2) return x.abs();
    std::vector<int64_t> dims(static_cast<size_t>(x.dim() - 1));
    std::iota(dims.begin(), dims.end(), int64_t{1});
    return at::linalg_vector_norm(x, 2, dims);
}

std::vector<torch::Tensor> RunRecord::tensors() const {
    std::vector<torch::Tensor> values{initial, final, lastPrediction, pathLength, velocitySquares, velocitySum};
    values.insert(values.end(), trajectory.begin(), trajectory.end());
    values.insert(values.end(), predictions.begin(), predictions.end());
    return values;
}

void RunRecord::setTensors(const std::vector<torch::Tensor>& values) {
    TORCH_CHECK(values.size() == 6 + trajectory.size() + predictions.size(), "internal: run record of another shape");
    initial = values[0];
    final = values[1];
    lastPrediction = values[2];
    pathLength = values[3];
    velocitySquares = values[4];
    velocitySum = values[5];
    size_t next = 6;
    for (auto& state : trajectory) state = values[next++];
    for (auto& prediction : predictions) prediction = values[next++];
}

void RunRecord::startSums(const torch::Tensor& x) {
    pathLength = torch::zeros({x.size(0)}, x.options());
    velocitySquares = torch::zeros({x.size(0)}, x.options());
    velocitySum = torch::zeros_like(x);
}

void RunRecord::addStep(const torch::Tensor& x, const torch::Tensor& next, const torch::Tensor& velocity, double h) {
    pathLength.add_(perSampleNorm(next - x));
    const torch::Tensor speed = perSampleNorm(velocity);
    velocitySquares.addcmul_(speed, speed, h);
    velocitySum.add_(velocity, h);
}

void RunRecord::addStep(const torch::Tensor& rows, const torch::Tensor& x, const torch::Tensor& next,
                        const torch::Tensor& velocity, const torch::Tensor& hColumn) {
    const torch::Tensor speed = perSampleNorm(velocity);
    if (!rows.defined()) {
        pathLength.add_(perSampleNorm(next - x));
        velocitySquares.addcmul_(hColumn.reshape({-1}) * speed, speed);
        velocitySum.addcmul_(hColumn, velocity);
        return;
    }
    pathLength.index_add_(0, rows, perSampleNorm(next - x));
    velocitySquares.index_add_(0, rows, hColumn.reshape({-1}) * speed * speed);
    velocitySum.index_add_(0, rows, hColumn * velocity);
}

bool RunRecord::finiteSoFar(const torch::Tensor& x) const {
    return torch::isfinite(x).all().item<bool>() &&
           (!velocitySquares.defined() || torch::isfinite(velocitySquares).all().item<bool>());
}

SolverContext::SolverContext(Model& model, const ProbabilityPath& path, std::vector<double> grid,
                             NoiseSource* noise, const SamplingOptions& options, torch::TensorOptions tensorOptions)
    : m_model(model),
      m_path(path),
      m_grid(std::move(grid)),
      m_noise(noise),
      m_options(options),
      m_tensorOptions(tensorOptions),
      m_deferChecks(options.deferChecks.value_or(tensorOptions.device().is_cuda())),
      m_plannedSteps(static_cast<int>(m_grid.size()) - 1) {}

SolverContext::Evaluation SolverContext::evaluate(const torch::Tensor& x, double t) {
    // Checked at every evaluation, not only per step: adaptive steps can take many evaluations.
    if (m_options.cancel && m_options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
    const PathPoint p = m_path.at(t);
    if (!(p.sigma > 0.0)) {
        throw std::logic_error("internal: model evaluated at sigma = 0 (t = " + std::to_string(t) + ")");
    }
    m_model.setStep(m_record.steps + m_options.history.stepOffset);
    Model::Prediction prediction = m_model.predict(x, p);
    torch::Tensor& data = prediction.data;
    ++m_record.nfe;
    if (!m_deferChecks && !torch::isfinite(data).all().item<bool>()) {
        std::ostringstream message;
        message << "the model returned NaN or Inf at step " << m_record.steps << " (t = " << t << ", NFE "
                << m_record.nfe << "); the run was stopped";
        throw std::runtime_error(message.str());
    }
    torch::Tensor velocity = prediction.velocity.defined() ? std::move(prediction.velocity) : velocityFromData(data, x, p);
    return {std::move(data), std::move(velocity)};
}

SolverContext::Evaluation SolverContext::beginStep(const torch::Tensor& x, double t) {
    if (m_options.cancel && m_options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
    return beginStep(x, t, evaluate(x, t));
}

SolverContext::Evaluation SolverContext::beginStep(const torch::Tensor& x, double t, Evaluation known) {
    if (m_options.cancel && m_options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
    if (!m_record.initial.defined()) {
        m_record.initial = x;
        m_record.times.push_back(t);
        if (m_options.recordTrajectory) m_record.trajectory.push_back(x);
        m_record.startSums(x);
    }
    m_stepStartX = x;
    m_stepStartT = t;
    m_stepVelocity = known.velocity;
    m_record.lastPrediction = known.data;
    if (m_options.recordTrajectory) m_record.predictions.push_back(known.data);
    if (m_options.onFrame) emitFrame(x, t, known.data, known.velocity.pow(2).mean().sqrt(), false);
    return known;
}

void SolverContext::endStep(const torch::Tensor& xNext, double tNext) {
    m_record.addStep(m_stepStartX, xNext, m_stepVelocity, tNext - m_stepStartT);
    ++m_record.steps;
    m_record.times.push_back(tNext);
    if (m_options.recordTrajectory) m_record.trajectory.push_back(xNext);
    if (m_deferChecks && !m_capturing && m_record.steps % kCheckInterval == 0) checkFiniteSoFar(xNext);
}

torch::Tensor SolverContext::drawNoise() {
    if (!m_noise) throw std::logic_error("internal: a stochastic solver ran without a noise source");
    return toDeviceAsync(m_noise->draw(), m_tensorOptions);
}

void SolverContext::emitFrame(const torch::Tensor& x, double t, const torch::Tensor& prediction,
                              const torch::Tensor& velocityRms, bool final) {
    if (!m_options.onFrame) return;
    FrameView frame;
    frame.index = m_record.steps;
    frame.plannedSteps = m_plannedSteps;
    frame.t = t;
    frame.point = m_path.at(t);
    frame.nfe = m_record.nfe;
    frame.state = &x;
    frame.prediction = &prediction;
    frame.velocityRms = velocityRms;
    frame.final = final;
    m_options.onFrame(frame);
}

void SolverContext::checkFiniteSoFar(const torch::Tensor& x) {
    if (!m_record.finiteSoFar(x)) {
        std::ostringstream message;
        message << "the model returned NaN or Inf within the first " << m_record.steps << " steps (NFE " << m_record.nfe
                << "); the run was stopped";
        throw std::runtime_error(message.str());
    }
}

RunRecord SolverContext::takeRecord(const torch::Tensor& x) {
    m_record.final = x;
    return std::move(m_record);
}

SamplingOutcome SolverContext::finish(const torch::Tensor& x) {
    if (m_deferChecks) checkFiniteSoFar(x);
    const double tEnd = m_record.times.back();
    const torch::Tensor prediction = m_path.sigma(tEnd) > 0.0 ? m_record.lastPrediction : x;
    if (m_options.recordTrajectory) m_record.predictions.push_back(prediction);
    emitFrame(x, tEnd, prediction, {}, true);
    return summarizeRun(takeRecord(x));
}

SamplingOutcome summarizeRun(RunRecord record) {
    SamplingOutcome outcome;
    // Path length ratio: sum of |x_{i+1} - x_i| over |x_end - x_start| (1 = straight).
    // Straightness (Liu et al.): (1/T) sum_i h_i |v_i - c|^2 / |c|^2 with c the chord velocity
    // (x_end - x_start)/T over the span T; with t from 0 to 1 this is their S, normalized.
    const torch::Tensor& x = record.final;
    const torch::Tensor chord = x - record.initial;
    const double span = record.times.back() - record.times.front();
    const torch::Tensor chordVelocity = chord / span;
    const torch::Tensor chordSquare = perSampleDot(chordVelocity, chordVelocity);
    const torch::Tensor deviation =
        record.velocitySquares - 2.0 * perSampleDot(record.velocitySum, chordVelocity) + span * chordSquare;
    outcome.pathLengthRatios = (record.pathLength / perSampleNorm(chord)).to(torch::kFloat64).cpu();
    outcome.straightnesses = (deviation / (span * chordSquare)).clamp_min(0.0).to(torch::kFloat64).cpu();
    outcome.pathLengthRatio = outcome.pathLengthRatios.mean().item<double>();
    outcome.straightness = outcome.straightnesses.mean().item<double>();

    outcome.initial = record.initial;
    outcome.final = record.final;
    outcome.trajectory = std::move(record.trajectory);
    outcome.predictions = std::move(record.predictions);
    outcome.times = std::move(record.times);
    outcome.stepSizes = std::move(record.stepSizes);
    outcome.nfe = record.nfe;
    outcome.steps = record.steps;
    return outcome;
}

// --- CUDA graphs -------------------------------------------------------------------------------

struct GraphCache::Entries {
    struct Entry {
        int runs = 0;                      // plain runs so far; the second run is captured
        bool failed = false;               // capture failed: the plain loop from now on
        std::unique_ptr<CudaGraph> graph;
        RunRecord layout;                  // host values and the record's shape
        std::vector<std::string> notes;    // the model's notes from the capture
    };
    std::map<std::string, Entry> byKey;
    // Where each model was last prepared: moving a model frees the tensors its graphs read.
    std::map<uint64_t, std::string> preparedFor;
};

GraphCache::GraphCache() : m_entries(std::make_unique<Entries>()) {}
GraphCache::~GraphCache() = default;
void GraphCache::clear() {
    m_entries->byKey.clear();
    m_entries->preparedFor.clear();
}
size_t GraphCache::size() const { return m_entries->byKey.size(); }

void GraphCache::prepare(Model& model, torch::Device device, torch::ScalarType dtype) {
    model.prepare(device, dtype);
    std::ostringstream placement;
    placement << device << '|' << dtype;
    auto& prepared = m_entries->preparedFor[model.instanceId()];
    if (prepared != placement.str()) {
        // The model's tensors may have moved since its graphs were captured: drop them.
        const std::string prefix = std::to_string(model.instanceId()) + "|";
        for (auto it = m_entries->byKey.begin(); it != m_entries->byKey.end();) {
            it = it->first.starts_with(prefix) ? m_entries->byKey.erase(it) : std::next(it);
        }
        prepared = placement.str();
    }
}

namespace {

std::string graphKey(const Model& model, const ProbabilityPath& path, const Solver& solver,
                     const std::vector<double>& grid, const torch::Tensor& x0, bool trajectory) {
    std::ostringstream key;
    key.precision(17);
    key << model.instanceId() << '|' << path.name() << '|' << solver.name() << '|' << x0.sizes() << '|'
        << x0.dtype() << '|' << x0.device() << '|' << trajectory;
    for (double t : grid) key << '|' << t;
    return key.str();
}

}  // namespace

SamplingOutcome runSampler(Model& model, const ProbabilityPath& path, Solver& solver, std::vector<double> grid,
                           const torch::Tensor& x0, NoiseSource* noise, const SamplingOptions& options) {
    if (grid.size() < 2) throw InvalidRequestError("a run needs at least one step");
    if (solver.isStochastic() && !noise) throw InvalidRequestError("solver '" + solver.name() + "' needs noise");
    GraphCache* graphs = options.graphs;
    if (graphs) {
        graphs->prepare(model, x0.device(), x0.scalar_type());
    } else {
        model.prepare(x0.device(), x0.scalar_type());
    }
    // A fork's history (a previous prediction, a step offset) is not part of a graph's key.
    const bool freshStart = !options.history.previousData.defined() && options.history.stepOffset == 0;
    if (graphs && options.captureGraphs && x0.is_cuda() && CudaGraph::available() && !options.onFrame &&
        !solver.isAdaptive() && !solver.isStochastic() && freshStart) {
        auto& entries = *graphs->m_entries;
        const std::string key = graphKey(model, path, solver, grid, x0, options.recordTrajectory);
        if (entries.byKey.size() >= 64 && !entries.byKey.count(key)) entries.byKey.clear();
        auto& entry = entries.byKey[key];
        // A run seen once is captured when it comes again (a one-off run would only pay for the
        // capture); a capture that failed is not tried again.
        if (!entry.graph && !entry.failed && entry.runs++ >= 1) {
            SamplingOptions captureOptions;
            captureOptions.recordTrajectory = options.recordTrajectory;
            const auto body = [&](const torch::Tensor& input) {
                SolverContext context(model, path, grid, noise, captureOptions, input.options());
                context.setCapturing();
                const torch::Tensor final = solver.integrate(context, input);
                entry.layout = context.takeRecord(final);
                return entry.layout.tensors();
            };
            try {
                entry.graph = std::make_unique<CudaGraph>(x0, body);
            } catch (const c10::OutOfMemoryError&) {
                // The graph's own memory pool did not fit beside the run: the plain loop, which
                // needs no second copy of its buffers, from now on.
                entry.failed = true;
                releaseCachedDeviceMemory();
            } catch (const std::runtime_error&) {
                entry.failed = true;  // the model waits for the GPU somewhere: plain loop
            }
            // What the model noted while captured (clamped ranges, ...) holds for every replay.
            entry.notes = model.takeNotes();
        }
        const auto found = entries.byKey.find(key);
        if (found->second.graph) {
            if (options.cancel && options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
            RunRecord record = found->second.layout;
            std::vector<torch::Tensor> outputs;
            for (const auto& output : found->second.graph->replay(x0)) outputs.push_back(output.clone());
            record.setTensors(outputs);
            record.initial = x0;
            if (!record.finiteSoFar(record.final)) throw std::runtime_error("the model returned NaN or Inf during the run; the run was stopped");
            if (options.recordTrajectory) {
                record.predictions.push_back(path.sigma(record.times.back()) > 0.0 ? record.lastPrediction
                                                                                   : record.final);
            }
            SamplingOutcome outcome = summarizeRun(std::move(record));
            outcome.replayedGraph = true;
            outcome.notes = found->second.notes;
            return outcome;
        }
    }

    SolverContext context(model, path, std::move(grid), noise, options, x0.options());
    if (solver.isAdaptive()) context.setPlannedSteps(0);
    const torch::Tensor final = solver.integrate(context, x0);
    return context.finish(final);
}

}  // namespace flowscope::core
