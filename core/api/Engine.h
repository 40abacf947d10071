#pragma once

// The engine's facade: plain structs in, plain structs out, no LibTorch types, so the UI and
// other front ends can include it without LibTorch headers. One Engine is used from one thread
// at a time (the worker that owns it); callbacks run on that thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/api/Guidance.h"
#include "core/api/Names.h"
#include "core/api/TextSettings.h"

namespace flowscope::core {

// The largest step count and batch a request may ask for. Front ends offer these limits (the
// window's boxes, the CLI's options) so that settings move between them unchanged.
inline constexpr int kMaxSteps = 10000;
inline constexpr int kMaxBatch = 4096;
// The largest side an image model may be resampled to (0 asks for the data's own).
inline constexpr int kMaxResolution = 1024;
// Runs end at t_end in [kMinTEnd, 1]: short of 1 stops while noise is left. Below 0.001 a run
// barely leaves its noise: in float32 its state may not change at all, and its measures (ratios
// to the distance travelled) are then undefined.
inline constexpr double kMinTEnd = 1e-3;
// What a model spec stands for, read without loading the model or its data (the window's views
// and memory estimates depend on it). When !ok, `error` says what is wrong with the spec.
struct ModelDescription {
    bool ok = false;
    std::string error;
    std::vector<int64_t> sampleShape;  // [2] for points; [C, H, W] for images and latents
    bool points = false;               // samples are 2-D points, drawn as scatter plots
    bool latent = false;               // shown through a decoder or a latent-to-RGB preview
    bool exact = false;                // an analytic mixture or an empirical denoiser (no network)
    std::string nativePath;            // a network's path ("" for exact models: every path is native)
    std::string parameterization;      // what a network predicts ("" for exact models)
    // Images can start a run (image to image, inversion): image models, and latent models with
    // an encoder. Latent models without one take their latents (RunStart::imageIsData).
    bool encodesImages = false;
    // For 2-D models, the spec whose referenceSamples show the target ("" when unknown).
    std::string referenceData;
    // A conditional model's class names, in index order (empty: unconditional). A request's
    // condition names one of them or gives its index.
    std::vector<std::string> classes;
    // Text-to-image checkpoints: the family ("FLUX.1 [dev]"), and that a prompt conditions them.
    std::string family;
    bool takesText = false;
    // SD3: a negative prompt conditions the unconditional half of classifier-free guidance. What
    // the family's model card runs: --schedule, --steps and --cfg (1: unguided).
    bool negativePrompt = false;
    std::string defaultSchedule;
    int defaultSteps = 0;
    double defaultCfg = 1.0;
    // TorchScript bundles whose manifest names a "conditioning" file: a run may give their network
    // other tensors (TextSettings's conditioning and unconditioning files). Without classes such a
    // bundle is conditioned by them, and guidance needs no class.
    bool takesConditioning = false;
};

// Sample k of a batch uses seed + k, and LibTorch's CPU generator keeps 32 bits of a seed.
inline constexpr uint64_t kMaxSeed = 4294967295;

// The kinds of names a request carries that the engine keeps tables of.
enum class NameKind { Path, Solver, Schedule, Device };

// A dense float32 array in C order on the host.
struct HostArray {
    std::vector<int64_t> shape;
    std::vector<float> values;
    int64_t count() const;
};

// Where a run starts (DESIGN.md section 3 for the default). Every start lies at a time t_start
// in [0, tEnd); the run covers [t_start, tEnd] on one of two grids:
//  - cut (the default): the schedule's own grid of `steps` steps over the whole run, the times at
//    or before t_start dropped and t_start put first ("denoise the remaining part of the same
//    schedule", what a fork and image-to-image at a strength ask for; a t_start on a grid time
//    continues exactly that grid);
//  - new (`newGrid`): `steps` steps of the schedule laid over [t_start, tEnd].
struct RunStart {
    enum class Kind {
        Noise,  // the seed's noise (or `noise`) at t_start: x = sigma(t_start) eps
        Image,  // image to image: `image` noised to t_start with the seed's noise (or `noise`),
                // x = alpha x_image + sigma eps; t_start = 1 - strength
        State,  // a given state at t_start, as it is (a fork; see Engine::forkStart)
    };
    Kind kind = Kind::Noise;
    // t_start, on this request's path. Noise starts at 0 begin where the schedule's grid begins
    // (the default run); Image starts at 1 return the image itself without a step.
    double time = 0.0;
    bool newGrid = false;
    // The noise eps instead of the seed's: [B, ...sampleShape], or [...sampleShape] for every
    // sample. The seed's generators still make their first draw (stochastic solvers continue
    // from them).
    HostArray noise;
    // Image: [B or 1, C, H, W] images in [-1, 1] (a latent model's encoder turns them into its
    // latents), or with `imageIsData` samples in the model's own space ([B or 1, ...sampleShape]:
    // latents, points).
    HostArray image;
    bool imageIsData = false;
    // State: x at t_start, [B, ...sampleShape]. A state of another path (`statePath`, "" = this
    // request's) at its time `time` is moved to this path at the same signal-to-noise ratio:
    // t' with lambda'(t') = lambda(time), x' = (sigma'/sigma) x (= (alpha'/alpha) x).
    HostArray state;
    std::string statePath;
    // A fork's solver history, so that unchanged settings continue the parent bit for bit:
    // DPM-Solver++(2M) takes its second-order step from the prediction at the previous time;
    // dopri5 tries `stepSize` first (0: its own first step); stochastic solvers continue after
    // the `noiseDraws` draws the parent's generators made (the initial noise counts as one).
    // On a cut grid, guidance counts steps as the whole grid does (CFG-Zero*'s zeroed steps).
    HostArray previousPrediction;
    double previousTime = -1.0;
    double stepSize = 0.0;
    int noiseDraws = 0;
};

struct SampleRequest {
    std::string model = "fashion-mnist";
    std::string path = "linear";
    std::string solver = "euler";
    std::string schedule = "uniform";
    int steps = 8;
    uint64_t seed = 0;
    int batch = 1;
    int resolution = 0;  // 0: the dataset's own
    std::string device = "auto";
    std::string dtype = "float32";
    double tEnd = 1.0;
    double rtol = 1e-5;  // dopri5
    double atol = 1e-5;  // dopri5
    bool recordTrajectory = false;  // return every state (and prediction) in the result
    bool recordPredictions = true;  // with recordTrajectory: also return every prediction
    bool analyze = false;           // fill SampleResult::analysis (distances, 2-D projection)
    // For 2-D models: the velocity field on a res x res grid over [-fieldExtent, fieldExtent]^2 in
    // every frame (display only; not counted as NFE). 0 = none.
    int velocityFieldResolution = 0;
    double fieldExtent = 4.5;
    // Bundles: load TorchScript files even when they are not in the trusted list (--trust-model).
    bool trustModel = false;
    // Latent bundles with a decoder: decode x̂0 every k steps for display (0: only the final
    // sample); the other steps show the cheap latent_rgb preview.
    int decodeEvery = 0;
    // Frames of images larger than this (either side, in pixels) carry states and predictions
    // averaged down on the device to fit; 0 keeps them whole. The result is always whole.
    int previewSize = 0;
    // On CUDA, fixed-step deterministic runs without frames are captured once as a CUDA graph
    // and replayed (same results, less launch overhead); false always runs the plain loop.
    bool cudaGraphs = true;
    // A conditional model's class, by name or index ("" = unconditional: the mixture over all
    // classes), and how the run is guided towards it (DESIGN.md section 6).
    std::string condition;
    GuidanceSettings guidance;
    RunStart start;
    // Text-to-image checkpoints: the prompt, the image size and the parts named beside the file.
    TextSettings text;
};

struct StepFrame {
    int index = 0;
    int plannedSteps = 0;  // 0 for adaptive solvers
    double t = 0.0;
    int nfe = 0;
    double velocityRms = 0.0;
    bool final = false;
    HostArray state;       // x_t, [B, ...sampleShape]
    HostArray prediction;  // x̂0 from x_t
    HostArray velocityField;  // [res, res, 2] velocities at the grid points, when requested
    // For models whose samples are not images in [-1, 1] (latents, other value ranges): the
    // state and prediction as display images [B, 1 or 3, H, W] in [-1, 1]. Empty otherwise.
    HostArray statePreview;
    HostArray predictionPreview;
    bool decoded = false;  // predictionPreview came from the bundle's decoder
};

// The geometry of a run, per recorded frame (DESIGN.md section 5 and the app's charts).
struct TrajectoryAnalysis {
    std::vector<double> times;            // t per frame
    std::vector<double> velocityRms;      // RMS per element of v at each frame (0 at the last)
    std::vector<double> distanceToFinal;  // RMS per element of x_t - x_end, batch mean
    // [B, frames, 2]: each sample's states in the plane of its chord (x_end - x_start, first
    // axis, scaled so the chord runs from (0, 0) to (1, 0)) and its main deviation from the chord
    // (second axis). A straight path stays on the first axis.
    HostArray projection;
};

enum class Failure { None, InvalidRequest, Runtime, Cancelled };

struct SampleResult {
    Failure failure = Failure::None;
    std::string error;  // a message a user can act on when failure != None
    bool ok() const { return failure == Failure::None; }

    std::vector<int64_t> sampleShape;
    std::string device;  // in words
    int nfe = 0;  // model evaluations per sample
    // Calls into the model: nfe unless the run was guided, when a step's conditional and
    // unconditional predictions come from one batched call (2B rows).
    int forwardPasses = 0;
    int steps = 0;
    double seconds = 0.0;
    double pathLengthRatio = 0.0;
    double straightness = 0.0;
    std::vector<double> pathLengthRatios;  // per sample
    std::vector<double> straightnesses;    // per sample
    HostArray initial;                     // x_{t0}
    HostArray final;                       // [B, ...], engine space, not clamped
    HostArray trajectory;                  // [steps + 1, B, ...] when recorded
    HostArray predictions;                 // [steps + 1, B, ...] when recorded
    std::vector<double> times;             // t_0 .. t_N
    // Adaptive solvers: the step size tried next from each frame's state (RunStart::stepSize of
    // a fork there). Empty for fixed-step solvers.
    std::vector<double> stepSizes;
    // Draws the samples' generators made (the initial noise, then one per stochastic step).
    int noiseDraws = 0;
    std::vector<std::string> notes;        // things the user should know (clamps, skipped files)
    bool cudaGraph = false;                // the run was replayed from a CUDA graph
    TrajectoryAnalysis analysis;           // when requested
    // Models with previews (see StepFrame): the final sample as an image (through the decoder
    // when there is one), and with recordTrajectory the cheap previews of every frame.
    HostArray finalImage;                  // [B, 1 or 3, H, W] in [-1, 1]
    HostArray trajectoryImages;            // [steps + 1, B, 1 or 3, H, W]
    HostArray predictionImages;            // [steps + 1, B, 1 or 3, H, W]
};

// Inversion: the probability-flow ODE solved backwards, from data at t = 1 to the noise at the
// grid's start that makes it, then (with `roundtrip`) forwards again from that noise. The grid is
// the schedule's, reversed; its first step leaves sigma = 0 first-order (the model is asked at
// the next time, as DDIM inversion does, never at sigma = 0). Deterministic solvers only.
struct InvertRequest {
    // model, path, solver, schedule, steps, device, dtype, tolerances, condition and guidance,
    // trust, resolution and recordTrajectory as for sampling; seed, batch and start are ignored.
    SampleRequest settings;
    // [B, C, H, W] images in [-1, 1], or with imageIsData [B, ...sampleShape] model samples.
    HostArray images;
    bool imageIsData = false;
    bool roundtrip = true;
};

struct InvertResult {
    Failure failure = Failure::None;
    std::string error;
    bool ok() const { return failure == Failure::None; }

    std::vector<int64_t> sampleShape;
    std::string device;
    HostArray data;       // what was inverted, in the model's space (latent models: the encoding)
    HostArray noise;      // eps = x_{t0} / sigma(t0), [B, ...sampleShape]
    HostArray roundtrip;  // the forward solve from that noise, [B, ...sampleShape]
    HostArray roundtripImage;  // models with previews: the round trip as images
    int nfe = 0;           // of the inversion, per sample
    int roundtripNfe = 0;  // of the forward solve
    int steps = 0;
    std::vector<double> times;  // the inversion's, from 1 down to t0
    // RMS per element of roundtrip - data (batch, and per sample).
    double roundtripRmse = 0.0;
    std::vector<double> roundtripRmses;
    // The recovered noise's values against N(0, 1): mean, standard deviation, skewness, excess
    // kurtosis, and the Kolmogorov-Smirnov distance to N(0, 1) with its p-value (a small p says
    // the values are not Gaussian).
    double noiseMean = 0.0, noiseStd = 0.0, noiseSkewness = 0.0, noiseKurtosis = 0.0;
    double normalityDistance = 0.0, normalityP = 0.0;
    HostArray trajectory;  // with settings.recordTrajectory: the inversion's states [N + 1, B, ...]
    double seconds = 0.0;
    std::vector<std::string> notes;
};

struct SweepRequest {
    std::string model = "gmm:8gaussians";
    std::vector<std::string> paths{"linear"};
    std::vector<std::string> solvers{"euler"};
    std::vector<std::string> schedules{"uniform"};
    std::vector<int> steps{1, 2, 4, 8};
    uint64_t seed = 0;
    int batch = 1;
    int resolution = 0;
    std::string device = "auto";
    double tEnd = 1.0;
    std::string referenceSolver{kAdaptiveSolver};
    double referenceTolerance = 1e-7;
    std::string referenceDtype = "float64";  // float32 trades reference accuracy for speed
    bool keepFinals = false;                 // return each row's final samples
    bool trustModel = false;                 // as SampleRequest::trustModel
    bool cudaGraphs = true;                  // as SampleRequest::cudaGraphs
    // Cells of one solver run together as one batch, each row at its own time and with
    // its own noise (dopri5's cells each with their own steps), and so do the references a sweep
    // lacks; false runs every cell and every reference alone. Guided sweeps run cells alone.
    bool batchCells = true;
    // As SampleRequest's. `cfgs` (non-empty) sweeps the guidance scale too: every cell once per
    // scale, each against its own reference; guidance.scale is then ignored.
    std::string condition;
    GuidanceSettings guidance;
    std::vector<double> cfgs;
    // Non-empty: every cell inverts these ([B, C, H, W] images in [-1, 1], or model samples with
    // roundtripIsData) and solves forwards again; a row's rmse is the round trip's against them,
    // its nfe the inversion's. seed, batch and the reference settings are then unused.
    HostArray roundtripImages;
    bool roundtripIsData = false;
    TextSettings text;  // as SampleRequest's
};

struct SweepRow {
    std::string path;
    std::string solver;
    std::string schedule;
    int steps = 0;
    int nfe = 0;
    double rmse = 0.0;  // per element, against the reference solve from the same noise
    // For cells run as one batch: the row's share of the batch's time by evaluations (dopri5 cells
    // that are the same run, differing only in their step count, each report that run's share).
    double seconds = 0.0;
    double pathLengthRatio = 0.0;
    double straightness = 0.0;
    double cfg = 1.0;  // the guidance scale of the row
    HostArray final;   // when SweepRequest::keepFinals
};

struct SweepResult {
    Failure failure = Failure::None;
    std::string error;
    bool ok() const { return failure == Failure::None; }
    std::vector<SweepRow> rows;
    std::vector<std::string> notes;
};

struct EngineInfo {
    std::string version;
    std::string libtorchVersion;
    bool cudaAvailable = false;
    std::string defaultDevice;  // in words
    int threads = 0;
    std::vector<std::string> models, paths, solvers, schedules, parameterizations, devices;
    std::vector<std::string> scheduleForms;  // schedules as typed, parameters shown: flux[:L]
    std::string fashionMnistDirectory;
    bool fashionMnistInstalled = false;
};

// A model a menu offers: its spec and, where there is more to say, a line about it.
struct ModelEntry {
    std::string spec;
    std::string description;  // "" for the plain entries
    std::string nativePath;   // a shipped network's path ("" for exact models)
    bool shipped = false;     // a network FlowScope ships (resources/models)
};

// What a bundle folder holds, read without loading any code (for asking the user's trust).
struct BundleInfo {
    bool ok = false;
    std::string error;  // why the bundle cannot be used, when !ok
    std::string name;
    std::string format;
    std::vector<int64_t> sampleShape;
    bool latent = false;
    struct Program {
        std::string file;    // as the manifest names it
        std::string path;    // on disk
        std::string sha256;  // of the file's bytes
        bool trusted = false;
    };
    std::vector<Program> programs;  // files holding code: the TorchScript model and decoder
    bool needsTrust() const;
};

// Sample k of a batch uses seed + k, and LibTorch's CPU generator keeps 32 bits of a seed: the
// seeds of `count` samples must stay within 0..4294967295, or they would wrap onto seed 0's
// noise. Throws std::invalid_argument (a refused request) when they do not.
void checkSeeds(uint64_t seed, int64_t count);

class Engine {
public:
    using FrameCallback = std::function<void(const StepFrame&)>;
    using RowCallback = std::function<void(const SweepRow&)>;
    // Loads an image folder as [N, C, R, R] float values in [-1, 1]; adds notes about skipped
    // files; stops with CancelledError (core/api/Errors.h) when `*cancel` is set (it may be null).
    using FolderLoader = std::function<HostArray(const std::string& folder, int resolution,
                                                 std::vector<std::string>& notes, const std::atomic<bool>* cancel)>;

    explicit Engine(FolderLoader folderLoader = {});
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Never throws: failures come back in the result. `cancel` is checked before every step.
    SampleResult sample(const SampleRequest& request, const FrameCallback& onFrame = {},
                        const std::atomic<bool>* cancel = nullptr);
    SweepResult sweep(const SweepRequest& request, const RowCallback& onRow = {},
                      const std::atomic<bool>* cancel = nullptr);
    // Frames are the inversion's (t falling from 1) and then, with roundtrip, the forward run's.
    InvertResult invert(const InvertRequest& request, const FrameCallback& onFrame = {},
                        const std::atomic<bool>* cancel = nullptr);

    // The start of a run `child` that forks `parent` (whose result kept its trajectory and, for
    // DPM-Solver++(2M), its predictions) at frame `step`: the parent's state there on the child's
    // grid, cut at that time, with the solver history that lets unchanged settings continue the
    // parent bit for bit. Throws std::invalid_argument when the step is not one the parent has
    // or is its last.
    static RunStart forkStart(const SampleRequest& parent, const SampleResult& parentResult, int step,
                              const SampleRequest& child);

    static EngineInfo info();
    // The names of `kind` that info() lists, for menus, without probing devices (cheap on any
    // thread); the parametric shift:S comes with SD3's S = 3 so that every entry runs as it is.
    static std::vector<std::string> names(NameKind kind);
    // Empty when a request may name `name` as its `kind` (schedules also take shift:S and flux:L
    // with any valid number); otherwise why not, with the valid names. Cheap on any thread.
    static std::string checkName(NameKind kind, const std::string& name);
    // FlowScope's version, without probing devices (cheap on any thread).
    static std::string version();
    // Whether the solver chooses its own steps (and takes SampleRequest::rtol and atol). Throws
    // std::invalid_argument, listing the valid names, for an unknown solver.
    static bool solverIsAdaptive(const std::string& solver);
    // For 2-D models, points that show the target distribution: the point cloud itself, or
    // `count` samples of the Gaussian mixture ([N, 2]). Empty for image models and unknown specs.
    // With a condition (a class name or index of a mixture), the points of that class alone.
    static HostArray referenceSamples(const std::string& spec, int count, const std::string& condition = "");
    // What `spec` is at `resolution` (0: its own), from the spec and a bundle's manifest only.
    static ModelDescription describeModel(const std::string& spec, int resolution = 0);
    // The models a menu offers, exact ones first, then the networks FlowScope ships (cheap: reads
    // only the shipped manifests).
    static std::vector<ModelEntry> modelMenu();
    // The data sets a training menu offers: 2-D ones first (they train in seconds), then images.
    static std::vector<std::string> datasetMenu();
    // Reads DIR/flowscope.json and hashes the program files it names; never runs them.
    static BundleInfo inspectBundle(const std::string& directory);
    // Adds a file's hash to the user's trusted list (TrustList); false with `error` set on failure.
    static bool trustProgram(const BundleInfo::Program& program, std::string* error);

private:
    SweepResult roundtripSweep(const SweepRequest& request, const RowCallback& onRow, const std::atomic<bool>* cancel);

    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace flowscope::core
