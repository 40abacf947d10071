#include "core/sampling/BatchedCells.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/sampling/DeviceTransfer.h"
#include "core/sampling/Parameterization.h"
#include "core/sampling/StepRules.h"

namespace flowscope::core {
namespace {

// The solver a cell runner takes: a Runge-Kutta method, DDIM, DPM++(2M), an ancestral sampler or
// dopri5 (adaptive: each cell with its own step sizes).
enum class Kind { RungeKutta, Ddim, DpmPp2m, Ancestral, Adaptive, None };

Kind kindOf(std::string_view solver) {
    if (steps::rungeKuttaNamed(solver)) return Kind::RungeKutta;
    if (steps::ancestralNamed(solver)) return Kind::Ancestral;
    if (solver == "ddim") return Kind::Ddim;
    if (solver == "dpm++2m") return Kind::DpmPp2m;
    if (solver == kAdaptiveSolver) return Kind::Adaptive;
    return Kind::None;
}

// The solvers' updates (core/sampling/StepRules.h) with their coefficients taken per row.
class BatchedCellRunner {
public:
    BatchedCellRunner(Model& model, std::string_view solver, const std::vector<BatchedCell>& cells, const SolverSettings& settings,
               const std::atomic<bool>* cancel)
        : m_model(model),
          m_kind(kindOf(solver)),
          m_method(steps::rungeKuttaNamed(solver).value_or(steps::RungeKutta::Euler)),
          m_ancestral(steps::ancestralNamed(solver).value_or(steps::Ancestral::Ddpm)),
          m_cells(cells),
          m_settings(settings),
          m_cancel(cancel) {
        std::vector<torch::Tensor> starts;
        int64_t begin = 0;
        for (const auto& cell : cells) {
            if (!cell.path || cell.grid.size() < 2 || !cell.x0.defined() || (m_kind == Kind::Ancestral && !cell.noise)) {
                throw InvalidRequestError(
                    "internal: a cell needs a path, a grid of two times or more, a state, and noise for a stochastic solver");
            }
            m_begin.push_back(begin);
            m_count.push_back(cell.x0.size(0));
            begin += cell.x0.size(0);
            starts.push_back(cell.x0);
        }
        m_x = torch::cat(starts, 0);
        m_deferChecks = m_x.is_cuda();
        m_nfe.assign(cells.size(), 0);
        for (const auto& cell : cells) m_times.push_back(m_kind == Kind::Adaptive ? std::vector<double>{cell.grid.front()} : cell.grid);
        m_previousH.assign(cells.size(), 0.0);
        m_sums.startSums(m_x);
        if (m_kind == Kind::DpmPp2m) m_previousData = torch::zeros_like(m_x);
    }

    std::vector<SamplingOutcome> run() {
        if (m_kind == Kind::Adaptive) {
            runAdaptive();
        } else {
            size_t longest = 0;
            for (const auto& cell : m_cells) longest = std::max(longest, cell.grid.size() - 1);
            for (size_t i = 0; i < longest; ++i) {
                std::vector<size_t> active;
                for (size_t l = 0; l < m_cells.size(); ++l) {
                    if (m_cells[l].grid.size() - 1 > i) active.push_back(l);
                }
                step(i, active);
            }
        }
        if (m_deferChecks) checkFinite();
        std::vector<SamplingOutcome> outcomes;
        for (size_t l = 0; l < m_cells.size(); ++l) {
            RunRecord record;
            record.initial = m_cells[l].x0;
            record.final = m_x.narrow(0, m_begin[l], m_count[l]);
            record.pathLength = m_sums.pathLength.narrow(0, m_begin[l], m_count[l]);
            record.velocitySquares = m_sums.velocitySquares.narrow(0, m_begin[l], m_count[l]);
            record.velocitySum = m_sums.velocitySum.narrow(0, m_begin[l], m_count[l]);
            record.times = m_times[l];
            record.nfe = m_nfe[l];
            record.steps = static_cast<int>(m_times[l].size()) - 1;
            outcomes.push_back(summarizeRun(std::move(record)));
        }
        return outcomes;
    }

private:
    struct Evaluation {
        torch::Tensor data, velocity;
    };

    // The rows of some cells, as an index into the whole batch.
    torch::Tensor rowsOf(const std::vector<size_t>& cells) const {
        std::vector<int64_t> rows;
        for (size_t l : cells) {
            for (int64_t r = 0; r < m_count[l]; ++r) rows.push_back(m_begin[l] + r);
        }
        return deviceIndex(rows, m_x.device());
    }

    // One value per cell, repeated over the cell's rows, as a column [R, 1, ...] like x.
    torch::Tensor column(const std::vector<size_t>& cells, const std::vector<double>& perCell) const {
        std::vector<double> values;
        for (size_t k = 0; k < cells.size(); ++k) values.insert(values.end(), m_count[cells[k]], perCell[k]);
        std::vector<int64_t> shape(m_x.dim(), 1);
        shape[0] = static_cast<int64_t>(values.size());
        return deviceValues(values, m_x).reshape(shape);
    }

    Evaluation evaluate(const std::vector<size_t>& cells, const torch::Tensor& x, const std::vector<double>& times) {
        if (m_cancel && m_cancel->load(std::memory_order_relaxed)) throw CancelledError();
        std::vector<PathPoint> points;
        for (size_t k = 0; k < cells.size(); ++k) {
            const PathPoint p = m_cells[cells[k]].path->at(times[k]);
            if (!(p.sigma > 0.0)) throw std::logic_error("internal: model evaluated at sigma = 0");
            points.insert(points.end(), m_count[cells[k]], p);
            ++m_nfe[cells[k]];
        }
        // As SolverContext::evaluate: the model's own velocity where it has one.
        Model::Prediction prediction = m_model.predictRows(x, points);
        if (!m_deferChecks && !torch::isfinite(prediction.data).all().item<bool>()) {
            throw std::runtime_error("the model returned NaN or Inf in a sweep; the sweep was stopped");
        }
        torch::Tensor velocity = prediction.velocity.defined() ? std::move(prediction.velocity)
                                                               : velocityFromData(prediction.data, x, rowPoints(points, x));
        return {std::move(prediction.data), std::move(velocity)};
    }

    void checkFinite() const {
        if (!m_sums.finiteSoFar(m_x)) {
            throw std::runtime_error("the model returned NaN or Inf in a sweep; the sweep was stopped");
        }
    }

    std::vector<double> perCell(const std::vector<size_t>& cells, const std::function<double(size_t)>& value) const {
        std::vector<double> values;
        for (size_t l : cells) values.push_back(value(l));
        return values;
    }

    void step(size_t i, const std::vector<size_t>& active) {
        if (m_cancel && m_cancel->load(std::memory_order_relaxed)) throw CancelledError();
        const auto t = perCell(active, [&](size_t l) { return m_cells[l].grid[i]; });
        const auto h = perCell(active, [&](size_t l) { return m_cells[l].grid[i + 1] - m_cells[l].grid[i]; });
        // Every cell still stepping (up to the shortest cell's last step): the rows are all of
        // them, in order, and x is the state itself, which changes only once the step is done.
        const bool everyCell = active.size() == m_cells.size();
        const torch::Tensor rows = everyCell ? torch::Tensor() : rowsOf(active);
        const torch::Tensor x = everyCell ? m_x : m_x.index_select(0, rows);
        const Evaluation start = evaluate(active, x, t);
        torch::Tensor next;
        switch (m_kind) {
            case Kind::Ddim: next = exponentialStep(i, active, x, start.data); break;
            case Kind::DpmPp2m: next = dpmStep(i, active, rows, start.data, x); break;
            default: next = splitStep(i, active, x, start); break;
        }
        recordSteps(rows, x, next, start.velocity, column(active, h));
        if (m_deferChecks && (i + 1) % 64 == 0) checkFinite();
    }

    // Steps from x to next on `rows` (undefined: every row), whose velocity at the start was
    // `velocity`, of sizes hColumn: the run's sums (RunRecord::addStep) and the state move on.
    void recordSteps(const torch::Tensor& rows, const torch::Tensor& x, const torch::Tensor& next,
                     const torch::Tensor& velocity, const torch::Tensor& hColumn) {
        m_sums.addStep(rows, x, next, velocity, hColumn);
        if (rows.defined()) {
            m_x.index_copy_(0, rows, next);
        } else {
            m_x.copy_(next);
        }
    }

    // Positions, within the rows of `cells` in order, of the rows of the cells picked out.
    torch::Tensor localRows(const std::vector<size_t>& cells, const std::vector<bool>& picked) const {
        std::vector<int64_t> local;
        int64_t offset = 0;
        for (size_t k = 0; k < cells.size(); ++k) {
            for (int64_t r = 0; r < m_count[cells[k]]; ++r) {
                if (picked[k]) local.push_back(offset + r);
            }
            offset += m_count[cells[k]];
        }
        return deviceIndex(local, m_x.device());
    }

    // Where each cell's dopri5 run stands.
    struct AdaptiveState {
        std::vector<double> t, h, end;
        std::vector<int> rejectedInARow;
        std::vector<bool> started;
    };

    // dopri5 (core/sampling/StepRules.h) on every cell at once: at each iteration the cells still inside
    // their adaptive span attempt a step of their own size together, and each accepts or rejects
    // by the error norm over its own rows, as its run alone would. The evaluation at a cell's new
    // point is its next step's first stage.
    void runAdaptive() {
        const size_t count = m_cells.size();
        AdaptiveState state{std::vector<double>(count), std::vector<double>(count), std::vector<double>(count),
                            std::vector<int>(count, 0), std::vector<bool>(count, false)};
        for (size_t l = 0; l < count; ++l) {
            state.t[l] = m_cells[l].grid.front();
            state.end[l] = steps::dopri5::adaptiveEnd(m_cells[l].grid.back());
            state.h[l] = std::min(steps::dopri5::kFirstStep, state.end[l] - state.t[l]);
        }
        m_startData = torch::empty_like(m_x);
        m_startVelocity = torch::empty_like(m_x);
        for (int64_t iteration = 1;; ++iteration) {
            std::vector<size_t> active;
            for (size_t l = 0; l < count; ++l) {
                if (state.t[l] < state.end[l] - 1e-12) active.push_back(l);
            }
            if (active.empty()) break;
            startAdaptive(state, active);
            for (size_t l : active) state.h[l] = std::min(state.h[l], state.end[l] - state.t[l]);
            attemptAdaptive(state, active);
            if (m_deferChecks && iteration % 64 == 0) checkFinite();
        }
        finishAdaptive(state);
    }

    // The first stage of the cells that have none yet, evaluated at their current times.
    void startAdaptive(AdaptiveState& state, const std::vector<size_t>& cells) {
        std::vector<size_t> fresh;
        for (size_t l : cells) {
            if (!state.started[l]) fresh.push_back(l);
        }
        if (fresh.empty()) return;
        const torch::Tensor rows = rowsOf(fresh);
        const Evaluation first =
            evaluate(fresh, m_x.index_select(0, rows), perCell(fresh, [&](size_t l) { return state.t[l]; }));
        m_startData.index_copy_(0, rows, first.data);
        m_startVelocity.index_copy_(0, rows, first.velocity);
        for (size_t l : fresh) state.started[l] = true;
    }

    // One step attempted by every active cell together; each accepts or rejects its own.
    void attemptAdaptive(AdaptiveState& state, const std::vector<size_t>& active) {
        // While every cell is still in its adaptive span (the usual case) the rows are all of
        // them, in order: no gathering and scattering. x and k1 are then the state and the
        // first stages themselves, which change only once the attempt is done with.
        const bool everyCell = active.size() == m_cells.size();
        const torch::Tensor rows = everyCell ? torch::Tensor() : rowsOf(active);
        const torch::Tensor x = everyCell ? m_x : m_x.index_select(0, rows);
        const torch::Tensor k1 = everyCell ? m_startVelocity : m_startVelocity.index_select(0, rows);
        const std::vector<double> hActive = perCell(active, [&](size_t l) { return state.h[l]; });
        const torch::Tensor hColumn = column(active, hActive);
        const auto evaluateAt = [&](const torch::Tensor& stageX, double c, double d) {
            std::vector<double> times;
            for (size_t k = 0; k < active.size(); ++k) times.push_back(state.t[active[k]] + c * hActive[k] / d);
            return evaluate(active, stageX, times);
        };
        auto attempt = steps::dopri5::attempt(x, hColumn, k1, evaluateAt);
        // Each cell's error norm: the root mean square over its rows (all of one size).
        const torch::Tensor rowErrors = (
            steps::dopri5::scaledSquaredError(attempt.error, x, attempt.x, m_settings.rtol, m_settings.atol)
                .reshape({x.size(0), -1})
                .mean(1)
                .to(torch::kCPU, torch::kFloat64)
                .contiguous());
        std::vector<bool> accepted(active.size());
        std::vector<double> taken = hActive;
        const bool snapped = judgeAttempt(state, active, rowErrors.data_ptr<double>(), accepted, taken);
        const bool anyAccepted = std::any_of(accepted.begin(), accepted.end(), [](bool a) { return a; });
        const torch::Tensor takenColumn = snapped ? column(active, taken) : hColumn;
        if (everyCell && std::all_of(accepted.begin(), accepted.end(), [](bool a) { return a; })) {
            recordSteps({}, x, attempt.x, k1, takenColumn);
            m_startData.copy_(attempt.end.data);
            m_startVelocity.copy_(attempt.end.velocity);
        } else if (anyAccepted) {
            const torch::Tensor local = localRows(active, accepted);
            const torch::Tensor moved = everyCell ? local : rows.index_select(0, local);
            recordSteps(moved, x.index_select(0, local), attempt.x.index_select(0, local), k1.index_select(0, local),
                        takenColumn.index_select(0, local));
            m_startData.index_copy_(0, moved, attempt.end.data.index_select(0, local));
            m_startVelocity.index_copy_(0, moved, attempt.end.velocity.index_select(0, local));
        }
    }

    // Each active cell's verdict on its attempt from the squared errors of its rows: accepted cells
    // move on (`taken`: the step as the run alone records it), the others shrink their step.
    // True when an accepted step snapped onto its cell's end.
    bool judgeAttempt(AdaptiveState& state, const std::vector<size_t>& active, const double* rowError,
                      std::vector<bool>& accepted, std::vector<double>& taken) {
        bool snapped = false;
        int64_t offset = 0;
        for (size_t k = 0; k < active.size(); ++k) {
            const size_t l = active[k];
            double sum = 0.0;
            for (int64_t r = 0; r < m_count[l]; ++r) sum += rowError[offset + r];
            offset += m_count[l];
            const double error = std::sqrt(sum / static_cast<double>(m_count[l]));
            steps::dopri5::checkErrorNorm(error, state.t[l]);
            accepted[k] = error <= 1.0;
            if (accepted[k]) {
                const double reached = steps::dopri5::timeAfter(state.t[l], state.h[l], state.end[l]);
                if (reached - state.t[l] != taken[k]) snapped = true;
                taken[k] = reached - state.t[l];
                state.t[l] = reached;
                m_times[l].push_back(state.t[l]);
                state.h[l] *= steps::dopri5::grownStep(error);
                state.rejectedInARow[l] = 0;
            } else {
                state.h[l] *= steps::dopri5::shrunkStep(error);
                if (++state.rejectedInARow[l] > steps::dopri5::kMostRejectedInARow || state.h[l] < 1e-12) {
                    // Cells run a sweep's dopri5 cells (tolerance 1e-5) and its references.
                    throw steps::dopri5::toleranceNotMet(
                        state.t[l], "loosen --reference-tol, or leave dopri5 out of the sweep's solvers");
                }
            }
        }
        return snapped;
    }

    // The last stretch to t_end, first order: onto alpha x̂0 at sigma = 0, an Euler step elsewhere.
    void finishAdaptive(AdaptiveState& state) {
        std::vector<size_t> finishing;
        for (size_t l = 0; l < m_cells.size(); ++l) {
            if (m_cells[l].grid.back() > state.t[l]) finishing.push_back(l);
        }
        if (finishing.empty()) return;
        startAdaptive(state, finishing);
        const torch::Tensor rows = rowsOf(finishing);
        const torch::Tensor x = m_x.index_select(0, rows);
        const torch::Tensor velocity = m_startVelocity.index_select(0, rows);
        const torch::Tensor data = m_startData.index_select(0, rows);
        std::vector<double> h1, landing, alphaEnd;
        for (size_t l : finishing) {
            const double tEnd = m_cells[l].grid.back();
            h1.push_back(tEnd - state.t[l]);
            landing.push_back(m_cells[l].path->sigma(tEnd) > 0.0 ? 0.0 : 1.0);
            alphaEnd.push_back(m_cells[l].path->alpha(tEnd));
            m_times[l].push_back(tEnd);
        }
        const torch::Tensor hColumn = column(finishing, h1);
        const torch::Tensor next =
            torch::where(column(finishing, landing) != 0.0, column(finishing, alphaEnd) * data, x + hColumn * velocity);
        recordSteps(rows, x, next, velocity, hColumn);
    }

    // Runge-Kutta and ancestral steps: a cell whose step ends at sigma = 0 lands on alpha x̂0 (and
    // draws no noise); the others take the solver's step.
    torch::Tensor splitStep(size_t i, const std::vector<size_t>& active, const torch::Tensor& x, const Evaluation& start) {
        std::vector<size_t> regular, landing;
        std::vector<int64_t> regularRows, landingRows;
        int64_t offset = 0;
        for (size_t l : active) {
            const bool endsAtZero = !(m_cells[l].path->sigma(m_cells[l].grid[i + 1]) > 0.0);
            (endsAtZero ? landing : regular).push_back(l);
            for (int64_t r = 0; r < m_count[l]; ++r) (endsAtZero ? landingRows : regularRows).push_back(offset + r);
            offset += m_count[l];
        }
        torch::Tensor next = torch::empty_like(x);
        if (!landing.empty()) {
            const torch::Tensor local = deviceIndex(landingRows, x.device());
            const auto alphaNext = perCell(landing, [&](size_t l) { return m_cells[l].path->alpha(m_cells[l].grid[i + 1]); });
            next.index_copy_(0, local, column(landing, alphaNext) * start.data.index_select(0, local));
        }
        if (!regular.empty()) {
            const torch::Tensor local = deviceIndex(regularRows, x.device());
            const torch::Tensor xr = x.index_select(0, local);
            const torch::Tensor result = m_kind == Kind::Ancestral
                                             ? ancestralStep(i, regular, xr, start.data.index_select(0, local))
                                             : rungeKuttaStep(i, regular, xr, start.velocity.index_select(0, local));
            next.index_copy_(0, local, result);
        }
        return next;
    }

    torch::Tensor rungeKuttaStep(size_t i, const std::vector<size_t>& cells, const torch::Tensor& x,
                                 const torch::Tensor& k1) {
        const auto t = perCell(cells, [&](size_t l) { return m_cells[l].grid[i]; });
        const auto h = perCell(cells, [&](size_t l) { return m_cells[l].grid[i + 1] - m_cells[l].grid[i]; });
        const auto stepSize = [&](double c, double d) {
            std::vector<double> values;
            for (double value : h) values.push_back(c * value / d);
            return column(cells, values);
        };
        const auto velocityAt = [&](const torch::Tensor& state, double c) {
            std::vector<double> times;
            for (size_t k = 0; k < t.size(); ++k) times.push_back(t[k] + c * h[k]);
            return evaluate(cells, state, times).velocity;
        };
        return steps::rungeKuttaStep(m_method, x, stepSize, k1, velocityAt);
    }

    // Each cell draws its fresh noise from its own generators, as its run alone would.
    torch::Tensor ancestralStep(size_t i, const std::vector<size_t>& cells, const torch::Tensor& x,
                                const torch::Tensor& data) {
        std::vector<double> alpha, sigma, alphaNext, epsWeight, noiseWeight;
        std::vector<torch::Tensor> draws;
        for (size_t l : cells) {
            const steps::AncestralStep s = steps::ancestralStep(m_ancestral, *m_cells[l].path, m_cells[l].grid[i],
                                                                m_cells[l].grid[i + 1]);
            alpha.push_back(s.alpha);
            sigma.push_back(s.sigma);
            alphaNext.push_back(s.alphaNext);
            epsWeight.push_back(s.epsWeight);
            noiseWeight.push_back(s.noiseWeight);
            draws.push_back(m_cells[l].noise->draw());
        }
        const torch::Tensor noise = toDeviceAsync(draws.size() == 1 ? draws.front() : torch::cat(draws, 0), x.options());
        return steps::ancestralUpdate(m_ancestral, x, data, noise, column(cells, alpha), column(cells, sigma),
                                      column(cells, alphaNext), column(cells, epsWeight), column(cells, noiseWeight));
    }

    // DDIM's exponential step, its coefficients per cell.
    torch::Tensor exponentialStep(size_t i, const std::vector<size_t>& active, const torch::Tensor& x,
                                  const torch::Tensor& data) const {
        std::vector<double> ratio, weight;
        for (size_t l : active) {
            const steps::ExponentialStep step = steps::exponentialStep(*m_cells[l].path, m_cells[l].grid[i], m_cells[l].grid[i + 1]);
            ratio.push_back(step.ratio);
            weight.push_back(step.weight);
        }
        return steps::exponentialUpdate(x, column(active, ratio), column(active, weight), data);
    }

    // DPM++(2M): the exponential step on a corrected x̂0, first order on a cell's first and last step.
    // rows: those of the active cells (undefined: every row).
    torch::Tensor dpmStep(size_t i, const std::vector<size_t>& active, const torch::Tensor& rows,
                          const torch::Tensor& data, const torch::Tensor& x) {
        std::vector<double> weights;
        bool anyCorrected = false;
        for (size_t l : active) {
            const auto& path = *m_cells[l].path;
            const double h = path.lambda(m_cells[l].grid[i + 1]) - path.lambda(m_cells[l].grid[i]);
            const bool lastStep = i + 2 == m_cells[l].grid.size();
            double weight = 0.0;
            if (i > 0 && !lastStep) {
                weight = steps::secondOrderWeight(m_previousH[l], h);
                anyCorrected = true;
            }
            weights.push_back(weight);
            m_previousH[l] = h;
        }
        torch::Tensor corrected = data;
        if (anyCorrected) {
            const torch::Tensor w = column(active, weights);
            const torch::Tensor previous = rows.defined() ? m_previousData.index_select(0, rows) : m_previousData;
            // Rows without a correction keep x̂0 itself (not 1 x̂0 - 0 previous, which is not
            // always the same number).
            corrected = torch::where(w != 0.0, steps::secondOrderData(data, w, previous), data);
        }
        if (rows.defined()) {
            m_previousData.index_copy_(0, rows, data);
        } else {
            m_previousData.copy_(data);
        }
        return exponentialStep(i, active, x, corrected);
    }

    Model& m_model;
    Kind m_kind;
    steps::RungeKutta m_method;
    steps::Ancestral m_ancestral;
    const std::vector<BatchedCell>& m_cells;
    SolverSettings m_settings;
    const std::atomic<bool>* m_cancel;
    bool m_deferChecks = false;
    std::vector<int64_t> m_begin, m_count;
    std::vector<int> m_nfe;
    std::vector<double> m_previousH;
    std::vector<std::vector<double>> m_times;  // each cell's times so far (its grid, for fixed steps)
    RunRecord m_sums;  // the per-step sums of every row
    torch::Tensor m_x, m_previousData;
    torch::Tensor m_startData, m_startVelocity;  // dopri5: each row's first stage of its next step
};

}  // namespace

bool solverBatchesCells(std::string_view solver) { return kindOf(solver) != Kind::None; }

std::vector<SamplingOutcome> runBatchedCells(Model& model, std::string_view solver, const std::vector<BatchedCell>& cells,
                                      const SolverSettings& settings, const std::atomic<bool>* cancel,
                                      GraphCache* graphs) {
    if (kindOf(solver) == Kind::None) throw InvalidRequestError("solver '" + std::string(solver) + "' cannot run cells together");
    if (kindOf(solver) == Kind::Adaptive && (!(settings.rtol > 0.0) || !(settings.atol > 0.0))) {
        throw InvalidRequestError("dopri5 needs rtol > 0 and atol > 0");
    }
    if (cells.empty()) return {};
    const torch::Tensor& x0 = cells.front().x0;
    if (graphs) {
        graphs->prepare(model, x0.device(), x0.scalar_type());
    } else {
        model.prepare(x0.device(), x0.scalar_type());
    }
    return BatchedCellRunner(model, solver, cells, settings, cancel).run();
}

}  // namespace flowscope::core
