#pragma once
// Move-only owners of PETSc objects. Destruction is collective in PETSc, so every rank
// holds the same handles and lets them die together, before PetscFinalize (the
// Environment is constructed first in main and therefore destroyed last).

#include <petscdm.h>
#include <petscksp.h>
#include <petscmat.h>
#include <petsctao.h>
#include <petscvec.h>
#include <petscviewer.h>

#include <utility>

namespace physgrad {

template <typename T, PetscErrorCode (*Destroy)(T*)>
class Handle {
 public:
  Handle() = default;
  /// Takes ownership of a freshly created object.
  explicit Handle(T obj) : obj_(obj) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      obj_ = std::exchange(other.obj_, nullptr);
    }
    return *this;
  }
  ~Handle() { reset(); }

  /// Destroys the owned object (collective); null-safe and idempotent.
  void reset() noexcept {
    if (obj_) {
      // Destructors must not throw; a failing destroy is reported by PETSc itself.
      (void)Destroy(&obj_);
      obj_ = nullptr;
    }
  }
  T get() const { return obj_; }
  operator T() const { return obj_; }  // NOLINT: handles are passed straight to PETSc
  /// Address for PETSc's XxxCreate(..., &obj) calls; releases any previous object.
  T* out() {
    reset();
    return &obj_;
  }
  T release() { return std::exchange(obj_, nullptr); }
  explicit operator bool() const { return obj_ != nullptr; }

 private:
  T obj_ = nullptr;
};

using OwnedVec = Handle<Vec, VecDestroy>;
using OwnedMat = Handle<Mat, MatDestroy>;
using OwnedKSP = Handle<KSP, KSPDestroy>;
using OwnedDM = Handle<DM, DMDestroy>;
using OwnedTao = Handle<Tao, TaoDestroy>;
using OwnedViewer = Handle<PetscViewer, PetscViewerDestroy>;

}  // namespace physgrad
