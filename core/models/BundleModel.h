#pragma once

#include <memory>

#include "core/models/Bundle.h"
#include "core/models/FlowNet.h"
#include "core/models/TrustList.h"
#include "core/sampling/Model.h"

namespace flowscope::core {

// Loads the network a bundle describes. Every program file (the TorchScript model and decoder)
// is read once into memory, checked against the manifest's sha256 when one is declared, and
// loaded from those same bytes only if `trustAll` is set or its hash is in `trustList`;
// otherwise UntrustedModelError says how to trust it. The model re-times the network to any path
// (NetworkDenoiser), passes the conditioning tensors after `time` as keyword arguments, converts
// dtype and device at its boundary, and previews latents through latent_rgb or the decoder.
std::shared_ptr<Model> loadBundleModel(const BundleManifest& manifest, bool trustAll, const TrustList& trustList);

// The network of a "flowscope-net" bundle with its weights (checked by name and shape).
std::shared_ptr<FlowNet> loadFlowNet(const BundleManifest& manifest);

}  // namespace flowscope::core
