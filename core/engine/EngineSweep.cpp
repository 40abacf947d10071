// Engine::sweep: every (path, schedule, solver, steps) cell of a request from the same noise, each
// measured against a reference solve of its path from that noise.
#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <sstream>

#include "core/api/Names.h"
#include "core/engine/EngineImpl.h"
#include "core/engine/HostArrays.h"
#include "core/sampling/BatchedCells.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"

namespace flowscope::core {
namespace {

// Cells of one solver run together as batch of one batch, at most kBatchRows rows at a time (a
// quarter of that for dopri5, which holds some fourteen copies of its state, in float64 for the
// references).
constexpr int64_t kBatchRows = 2048;
constexpr int64_t kAdaptiveBatchRows = kBatchRows / 4;

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point started) {
    return std::chrono::duration<double>(Clock::now() - started).count();
}

// One cell of the sweep, in the order rows are reported: path, schedule, solver, steps.
struct Cell {
    size_t path = 0;  // index into the request's paths
    std::string solverName;
    ScheduleSpec schedule;
    int steps = 0;
    std::vector<double> grid;
    torch::Tensor reference;
    bool done = false;
    SweepRow row;
};

class SweepRun {
public:
    SweepRun(const SweepRequest& request, Model& model, GraphCache& graphs, const std::atomic<bool>* cancel)
        : m_request(request),
          m_model(model),
          m_graphs(graphs),
          m_cancel(cancel),
          m_shape(model.sampleShape()),
          m_device(resolveDevice(request.device)),
          // The reference runs in float64 so that its own error sits far below the solvers' errors.
          m_referenceOptions(torch::TensorOptions().device(m_device).dtype(resolveDtype(request.referenceDtype, m_device))),
          m_runOptions(torch::TensorOptions().device(m_device).dtype(torch::kFloat32)),
          m_referenceSolver(makeSolver(request.referenceSolver, {request.referenceTolerance, request.referenceTolerance})) {
        m_sampling.cancel = cancel;
        m_sampling.graphs = &graphs;
        m_sampling.captureGraphs = request.cudaGraphs;
        planCells();
    }

    void run(std::vector<SweepRow>& rows, const Engine::RowCallback& onRow) {
        if (m_request.batchCells && m_request.referenceSolver == kAdaptiveSolver) solveMissingReferences();
        for (auto& cell : m_cells) {
            if (!cell.done && m_request.batchCells && solverBatchesCells(cell.solverName)) runTogether(cell.solverName);
            if (!cell.done) runAlone(cell);
            if (onRow) onRow(cell.row);
            rows.push_back(cell.row);
        }
    }

private:
    void planCells() {
        for (size_t p = 0; p < m_request.paths.size(); ++p) {
            m_paths.push_back(makePath(m_request.paths[p]));
            for (const auto& scheduleName : m_request.schedules) {
                for (const auto& solverName : m_request.solvers) {
                    for (int steps : m_request.steps) {
                        Cell cell;
                        cell.path = p;
                        cell.solverName = solverName;
                        cell.schedule = parseSchedule(scheduleName);
                        cell.steps = steps;
                        cell.grid = makeTimeGrid(cell.schedule, *m_paths.back(), steps, fluxTokenCount(m_shape),
                                                 m_request.tEnd);
                        m_cells.push_back(std::move(cell));
                    }
                }
            }
        }
    }

    const ProbabilityPath& pathOf(const Cell& cell) const { return *m_paths[cell.path]; }

    // The reference for a cell: a float64 dopri5 solve from the same noise over the same span,
    // shared by every cell of the sweep with the same start.
    std::string referenceKey(const Cell& cell) const {
        std::ostringstream key;
        key.precision(17);
        key << m_request.model << '|' << m_request.resolution << '|' << m_request.seed << '|' << m_request.batch << '|'
            << m_request.paths[cell.path] << '|' << cell.grid.front() << '|' << m_request.tEnd << '|'
            << m_request.referenceSolver << '|' << m_request.referenceTolerance << '|' << m_request.referenceDtype
            << '|' << m_device.str();
        return key.str();
    }

    torch::Tensor referenceFor(const Cell& cell) {
        auto& reference = m_references[referenceKey(cell)];
        if (!reference.defined()) {
            NoiseSource noise(m_shape, m_request.seed, m_request.batch);
            const auto x0 = startState(noise, pathOf(cell), cell.grid.front(), m_referenceOptions);
            const std::vector<double> span{cell.grid.front(), m_request.tEnd};
            reference = runSampler(m_model, pathOf(cell), *m_referenceSolver, span, x0, &noise, m_sampling).final;
        }
        return reference;
    }

    // The references the sweep lacks, solved together as batched dopri5 cells (each picks its own
    // steps, so each reference is what it is alone).
    void solveMissingReferences() {
        std::map<std::string, const Cell*> missing;
        for (const auto& cell : m_cells) {
            const std::string key = referenceKey(cell);
            if (!m_references.count(key)) missing.emplace(key, &cell);
        }
        for (auto first = missing.begin(); first != missing.end();) {
            std::vector<BatchedCell> batch;
            std::vector<std::string> keys;
            std::deque<NoiseSource> noises;
            for (; first != missing.end() &&
                   (batch.empty() || int64_t(batch.size() + 1) * m_request.batch <= kAdaptiveBatchRows);
                 ++first) {
                const Cell& cell = *first->second;
                NoiseSource& noise = noises.emplace_back(m_shape, m_request.seed, m_request.batch);
                batch.push_back({&pathOf(cell), {cell.grid.front(), m_request.tEnd},
                                 startState(noise, pathOf(cell), cell.grid.front(), m_referenceOptions), &noise});
                keys.push_back(first->first);
            }
            const auto outcomes = runBatchedCells(m_model, kAdaptiveSolver, batch,
                                           {m_request.referenceTolerance, m_request.referenceTolerance}, m_cancel,
                                           &m_graphs);
            for (size_t k = 0; k < keys.size(); ++k) m_references[keys[k]] = outcomes[k].final;
        }
    }

    void fillRow(Cell& cell, const SamplingOutcome& outcome, double seconds) const {
        SweepRow& row = cell.row;
        row.path = m_request.paths[cell.path];
        row.solver = cell.solverName;
        row.schedule = toString(cell.schedule);
        row.steps = cell.steps;
        row.nfe = outcome.nfe;
        row.rmse = (outcome.final.to(torch::kFloat64) - cell.reference.to(torch::kFloat64)).pow(2).mean().sqrt().item<double>();
        row.pathLengthRatio = outcome.pathLengthRatio;
        row.straightness = outcome.straightness;
        row.cfg = m_request.guidance.scale;
        if (m_request.keepFinals) row.final = toHostArray(outcome.final);
        row.seconds = seconds;
        cell.done = true;
    }

    // The cells of one solver in one batch: a row's seconds is its share of the batch's
    // time by evaluations. dopri5 ignores the step count, so its cells that differ only there are
    // one batched cell.
    void runTogether(const std::string& solverName) {
        const bool adaptive = makeSolver(solverName)->isAdaptive();
        std::vector<size_t> members;
        for (size_t c = 0; c < m_cells.size(); ++c) {
            if (m_cells[c].solverName == solverName && !m_cells[c].done) members.push_back(c);
        }
        for (size_t c : members) m_cells[c].reference = referenceFor(m_cells[c]);
        const auto batchKey = [&](size_t c) {
            if (!adaptive) return std::to_string(c);
            std::ostringstream key;
            key.precision(17);
            key << m_cells[c].path << '|' << m_cells[c].grid.front() << '|' << m_cells[c].grid.back();
            return key.str();
        };
        const int64_t rowLimit = adaptive ? kAdaptiveBatchRows : kBatchRows;
        for (size_t first = 0; first < members.size();) {
            std::vector<BatchedCell> batch;
            std::map<std::string, size_t> rowsOf;
            std::vector<std::pair<size_t, size_t>> cellIndices;  // (cell, its index in the batch)
            std::deque<NoiseSource> noises;  // each batched cell's, kept for the stochastic solvers' draws
            for (; first < members.size(); ++first) {
                const Cell& cell = m_cells[members[first]];
                const auto [found, added] = rowsOf.emplace(batchKey(members[first]), batch.size());
                if (added) {
                    if (!batch.empty() && int64_t(batch.size() + 1) * m_request.batch > rowLimit) {
                        rowsOf.erase(found);
                        break;
                    }
                    NoiseSource& noise = noises.emplace_back(m_shape, m_request.seed, m_request.batch);
                    batch.push_back({&pathOf(cell), cell.grid,
                                     startState(noise, pathOf(cell), cell.grid.front(), m_runOptions), &noise});
                }
                cellIndices.emplace_back(members[first], found->second);
            }
            const auto started = Clock::now();
            const auto outcomes = runBatchedCells(m_model, solverName, batch, {}, m_cancel, &m_graphs);
            const double seconds = secondsSince(started);
            double evaluations = 0.0;
            for (const auto& outcome : outcomes) evaluations += outcome.nfe;
            for (const auto& [cell, index] : cellIndices) {
                const auto& outcome = outcomes[index];
                fillRow(m_cells[cell], outcome, evaluations > 0 ? seconds * outcome.nfe / evaluations : 0.0);
            }
        }
    }

    void runAlone(Cell& cell) {
        cell.reference = referenceFor(cell);
        const auto solver = makeSolver(cell.solverName);
        // Timed from here: the run itself, not the shared reference solve.
        const auto started = Clock::now();
        NoiseSource noise(m_shape, m_request.seed, m_request.batch);
        const auto x0 = startState(noise, pathOf(cell), cell.grid.front(), m_runOptions);
        const auto outcome = runSampler(m_model, pathOf(cell), *solver, cell.grid, x0, &noise, m_sampling);
        fillRow(cell, outcome, secondsSince(started));
    }

    const SweepRequest& m_request;
    Model& m_model;
    GraphCache& m_graphs;
    const std::atomic<bool>* m_cancel;
    std::vector<int64_t> m_shape;
    torch::Device m_device;
    torch::TensorOptions m_referenceOptions;
    torch::TensorOptions m_runOptions;
    std::unique_ptr<Solver> m_referenceSolver;
    SamplingOptions m_sampling;
    std::vector<std::unique_ptr<ProbabilityPath>> m_paths;
    std::vector<Cell> m_cells;
    std::map<std::string, torch::Tensor> m_references;  // the sweep's reference solves, by referenceKey
};

// Every name and limit of the request, before the model loads.
void checkSweepRequest(const SweepRequest& request) {
    if (request.paths.empty() || request.solvers.empty() || request.steps.empty() || request.schedules.empty()) {
        throw InvalidRequestError("a sweep needs at least one path, solver, schedule and step count");
    }
    for (int steps : request.steps) checkRanges(steps, request.batch, request.tEnd);
    checkSeeds(request.seed, request.batch);
    for (const auto& name : request.paths) makePath(name);
    for (const auto& name : request.solvers) makeSolver(name);
    for (const auto& name : request.schedules) parseSchedule(name);
    const torch::Device device = resolveDevice(request.device);
    const torch::ScalarType referenceDtype = resolveDtype(request.referenceDtype, device);
    const auto referenceSolver = makeSolver(request.referenceSolver, {request.referenceTolerance, request.referenceTolerance});
    if (referenceSolver->isAdaptive()) checkTolerance(request.referenceTolerance, "--reference-tol", referenceDtype);
    checkGuidance(request.guidance);
    for (const double cfg : request.cfgs) {
        GuidanceSettings settings = request.guidance;
        settings.scale = cfg;
        checkGuidance(settings);
    }
    if (request.guidance.method == GuidanceMethod::CfgZero && request.guidance.cfgZeroSteps > 0) {
        throw InvalidRequestError("a sweep measures every step count against one reference solve, and CFG-Zero*'s "
                                  "zeroed steps change the ODE with the step count: use --cfg-zero-steps 0 in sweeps");
    }
}

// The sweep's guidance scales: --cfgs, or the one scale of the request.
std::vector<double> sweepScales(const SweepRequest& request) {
    return request.cfgs.empty() ? std::vector<double>{request.guidance.scale} : request.cfgs;
}

}  // namespace

// A round-trip sweep: every cell inverts the images and solves forwards again (Engine::invert);
// its rmse is the round trip's.
SweepResult Engine::roundtripSweep(const SweepRequest& request, const RowCallback& onRow, const std::atomic<bool>* cancel) {
    SweepResult result;
    for (const double scale : sweepScales(request)) {
        for (const auto& path : request.paths) {
            for (const auto& schedule : request.schedules) {
                for (const auto& solver : request.solvers) {
                    for (const int steps : request.steps) {
                        InvertRequest invertRequest;
                        SampleRequest& settings = invertRequest.settings;
                        settings.model = request.model;
                        settings.path = path;
                        settings.solver = solver;
                        settings.schedule = schedule;
                        settings.steps = steps;
                        settings.device = request.device;
                        settings.resolution = request.resolution;
                        settings.trustModel = request.trustModel;
                        settings.text = request.text;
                        settings.cudaGraphs = request.cudaGraphs;
                        settings.condition = request.condition;
                        settings.guidance = request.guidance;
                        settings.guidance.scale = scale;
                        invertRequest.images = request.roundtripImages;
                        invertRequest.imageIsData = request.roundtripIsData;
                        const InvertResult inverted = invert(invertRequest, {}, cancel);
                        if (!inverted.ok()) return failureResult<SweepResult>(inverted.failure, inverted.error);
                        SweepRow row;
                        row.path = path;
                        row.solver = solver;
                        row.schedule = schedule;
                        row.steps = steps;
                        row.nfe = inverted.nfe;
                        row.rmse = inverted.roundtripRmse;
                        row.seconds = inverted.seconds;
                        row.cfg = scale;
                        if (request.keepFinals) row.final = inverted.roundtrip;
                        for (const auto& note : inverted.notes) {
                            if (std::find(result.notes.begin(), result.notes.end(), note) == result.notes.end()) {
                                result.notes.push_back(note);
                            }
                        }
                        if (onRow) onRow(row);
                        result.rows.push_back(std::move(row));
                    }
                }
            }
        }
    }
    return result;
}

SweepResult Engine::sweep(const SweepRequest& request, const RowCallback& onRow, const std::atomic<bool>* cancel) {
    if (!request.roundtripImages.shape.empty()) {
        // Scales need a class, except for models conditioned by an input of the run (SD3's prompt,
        // a bundle's tensors): refused before any cell runs.
        const SweepResult checked = guarded<SweepResult>([&] {
            checkSweepRequest(request);
            if (!request.cfgs.empty() && request.condition.empty()) {
                const ModelDescription model = describeModel(request.model, request.resolution);
                const bool byInput = model.negativePrompt ||
                                     (model.classes.empty() && (model.takesConditioning || !request.text.conditioning.empty()));
                if (model.ok && !byInput) throw InvalidRequestError("--cfgs sweeps the guidance towards a class: give --class");
            }
            return SweepResult{};
        }, [this] { m_impl->releaseMemory(); });
        if (!checked.ok()) return checked;
        return roundtripSweep(request, onRow, cancel);
    }
    return guarded<SweepResult>([&] {
        c10::InferenceMode inference;
        checkSweepRequest(request);
        SweepResult result;
        const auto model = loadModel(m_impl->catalog, request.model, request.resolution, request.text, request.device,
                                     result.notes, request.trustModel, cancel);
        const bool byInput = model->conditionedByInput();
        if (!request.cfgs.empty() && request.condition.empty() && !byInput) {
            throw InvalidRequestError("--cfgs sweeps the guidance towards a class: give --class");
        }
        // An unguided bundle conditioned by its tensors sweeps as it is, batched (SD3 is always
        // guided towards its prompt).
        const bool guiding = !request.condition.empty() || !request.cfgs.empty() ||
                             (byInput && (model->takesText() || request.guidance.guides()));
        if (!guiding) {
            // Refuses guidance without a class.
            conditionedModel(model, request.model, "", request.guidance, *makePath(request.paths.front()), false);
            SweepRequest plain = request;
            // Conditioning files of this sweep: the next ones replace the tensors a graph would read.
            if (!request.text.conditioning.empty() || !request.text.unconditioning.empty()) plain.cudaGraphs = false;
            SweepRun(plain, *model, m_impl->graphs, cancel).run(result.rows, onRow);
        } else {
            // Each scale is a sweep of its own, every cell run alone (a guided model guides one
            // noise level per call) and against the reference solve of its own guided ODE.
            const auto path = makePath(request.paths.front());
            for (const double scale : sweepScales(request)) {
                SweepRequest scaled = request;
                scaled.guidance.scale = scale;
                scaled.batchCells = false;
                scaled.cudaGraphs = false;  // the guided model is made for this sweep
                const auto guided = conditionedModel(model, request.model, request.condition, scaled.guidance, *path, false);
                SweepRun(scaled, *guided, m_impl->graphs, cancel).run(result.rows, onRow);
            }
        }
        for (auto& note : model->takeNotes()) result.notes.push_back(std::move(note));
        return result;
    }, [this] { m_impl->releaseMemory(); });
}

}  // namespace flowscope::core
