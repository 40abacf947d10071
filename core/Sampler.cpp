#include "core/Sampler.h"

#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include "core/Errors.h"
#include "core/Parameterization.h"

namespace flowscope::core {
namespace {

torch::Tensor perSampleNorm(const torch::Tensor& x) { return x.reshape({x.size(0), -1}).norm(2, 1); }

torch::Tensor perSampleDot(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.reshape({a.size(0), -1}) * b.reshape({b.size(0), -1})).sum(1);
}

}  // namespace

SolverContext::SolverContext(Model& model, const ProbabilityPath& path, std::vector<double> grid,
                             NoiseSource* noise, const SamplingOptions& options, torch::TensorOptions tensorOptions)
    : m_model(model),
      m_path(path),
      m_grid(std::move(grid)),
      m_noise(noise),
      m_options(options),
      m_tensorOptions(tensorOptions),
      m_plannedSteps(static_cast<int>(m_grid.size()) - 1) {}

SolverContext::Evaluation SolverContext::evaluate(const torch::Tensor& x, double t) {
    // Checked at every evaluation, not only per step: adaptive steps can take many evaluations.
    if (m_options.cancel && m_options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
    const PathPoint p = m_path.at(t);
    if (!(p.sigma > 0.0)) {
        throw std::logic_error("internal: model evaluated at sigma = 0 (t = " + std::to_string(t) + ")");
    }
    torch::Tensor data = m_model.denoise(x, p.alpha, p.sigma);
    ++m_nfe;
    if (!torch::isfinite(data).all().item<bool>()) {
        std::ostringstream message;
        message << "the model returned NaN or Inf at step " << m_steps << " (t = " << t << ", NFE " << m_nfe
                << "); the run was stopped";
        throw std::runtime_error(message.str());
    }
    torch::Tensor velocity = velocityFromData(data, x, p);
    return {std::move(data), std::move(velocity)};
}

SolverContext::Evaluation SolverContext::beginStep(const torch::Tensor& x, double t) {
    if (m_options.cancel && m_options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
    return beginStep(x, t, evaluate(x, t));
}

SolverContext::Evaluation SolverContext::beginStep(const torch::Tensor& x, double t, Evaluation known) {
    if (m_options.cancel && m_options.cancel->load(std::memory_order_relaxed)) throw CancelledError();
    if (!m_initial.defined()) {
        m_initial = x;
        m_times.push_back(t);
        if (m_options.recordTrajectory) m_trajectory.push_back(x);
        const auto batch = x.size(0);
        auto accOptions = x.options();
        m_pathLength = torch::zeros({batch}, accOptions);
        m_velocitySquares = torch::zeros({batch}, accOptions);
        m_velocitySum = torch::zeros_like(x);
    }
    m_stepStartX = x;
    m_stepStartT = t;
    m_stepVelocity = known.velocity;
    m_lastPrediction = known.data;
    if (m_options.recordTrajectory) m_predictions.push_back(known.data);
    const double rms = known.velocity.pow(2).mean().sqrt().item<double>();
    emitFrame(x, t, known.data, rms, false);
    return known;
}

void SolverContext::endStep(const torch::Tensor& xNext, double tNext) {
    const double h = tNext - m_stepStartT;
    m_pathLength += perSampleNorm(xNext - m_stepStartX);
    m_velocitySquares += h * m_stepVelocity.reshape({m_stepVelocity.size(0), -1}).pow(2).sum(1);
    m_velocitySum += h * m_stepVelocity;
    ++m_steps;
    m_times.push_back(tNext);
    if (m_options.recordTrajectory) m_trajectory.push_back(xNext);
}

torch::Tensor SolverContext::drawNoise() {
    if (!m_noise) throw std::logic_error("internal: a stochastic solver ran without a noise source");
    return m_noise->draw().to(m_tensorOptions);
}

void SolverContext::emitFrame(const torch::Tensor& x, double t, const torch::Tensor& prediction, double velocityRms,
                              bool final) {
    if (!m_options.onFrame) return;
    FrameView frame;
    frame.index = m_steps;
    frame.plannedSteps = m_plannedSteps;
    frame.t = t;
    frame.point = m_path.at(t);
    frame.nfe = m_nfe;
    frame.state = &x;
    frame.prediction = &prediction;
    frame.velocityRms = velocityRms;
    frame.final = final;
    m_options.onFrame(frame);
}

SamplingOutcome SolverContext::finish(const torch::Tensor& x) {
    SamplingOutcome outcome;
    const double tEnd = m_times.back();
    const torch::Tensor prediction = m_path.sigma(tEnd) > 0.0 ? m_lastPrediction : x;
    if (m_options.recordTrajectory) m_predictions.push_back(prediction);
    emitFrame(x, tEnd, prediction, 0.0, true);

    // Path length ratio: sum of |x_{i+1} - x_i| over |x_end - x_start| (1 = straight).
    // Straightness (Liu et al.): (1/T) sum_i h_i |v_i - c|^2 / |c|^2 with c the chord velocity
    // (x_end - x_start)/T over the span T; with t from 0 to 1 this is their S, normalized.
    const torch::Tensor chord = x - m_initial;
    const double span = tEnd - m_times.front();
    const torch::Tensor chordVelocity = chord / span;
    const torch::Tensor chordSquare = perSampleDot(chordVelocity, chordVelocity);
    const torch::Tensor deviation =
        m_velocitySquares - 2.0 * perSampleDot(m_velocitySum, chordVelocity) + span * chordSquare;
    outcome.pathLengthRatios = (m_pathLength / perSampleNorm(chord)).to(torch::kFloat64).cpu();
    outcome.straightnesses = (deviation / (span * chordSquare)).clamp_min(0.0).to(torch::kFloat64).cpu();
    outcome.pathLengthRatio = outcome.pathLengthRatios.mean().item<double>();
    outcome.straightness = outcome.straightnesses.mean().item<double>();

    outcome.initial = m_initial;
    outcome.final = x;
    outcome.trajectory = std::move(m_trajectory);
    outcome.predictions = std::move(m_predictions);
    outcome.times = std::move(m_times);
    outcome.nfe = m_nfe;
    outcome.steps = m_steps;
    return outcome;
}

SamplingOutcome runSampler(Model& model, const ProbabilityPath& path, Solver& solver, std::vector<double> grid,
                           const torch::Tensor& x0, NoiseSource* noise, const SamplingOptions& options) {
    if (grid.size() < 2) throw InvalidRequestError("a run needs at least one step");
    if (solver.isStochastic() && !noise) throw InvalidRequestError("solver '" + solver.name() + "' needs noise");
    model.prepare(x0.device(), x0.scalar_type());
    SolverContext context(model, path, std::move(grid), noise, options, x0.options());
    if (solver.isAdaptive()) context.setPlannedSteps(0);
    const torch::Tensor final = solver.integrate(context, x0);
    return context.finish(final);
}

}  // namespace flowscope::core
