#pragma once
// Output files of a run: fields as parallel HDF5 with an XDMF description for ParaView,
// histories as CSV written by rank 0, and the directories they go into. Every function and
// constructor here is collective over its communicator, and every error is raised on all of
// its ranks, so that no rank is left waiting in a collective call after another one threw.

#include <petscvec.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "physgrad/core/handle.hpp"
#include "physgrad/grid/grid.hpp"

namespace physgrad {

/// Creates `path` and its missing parents (rank 0 creates, the others wait for it).
/// Throws InputError naming the path on every rank if it cannot be created.
void ensureDirectory(const std::string& path, MPI_Comm comm = PETSC_COMM_WORLD);

/// Writes global Vecs of one Grid into one HDF5 file, in parallel, and on close a sibling
/// XDMF file (`foo.h5` -> `foo.xmf`) that lets ParaView open every written field.
///
/// Layout (what PETSc 3.18 VecView writes for a DMDA with one dof, no time stepping): one
/// float64 dataset per field at "/<name>", shaped [nx] in 1D, [ny][nx] in 2D and
/// [nz][ny][nx] in 3D, in natural order (x fastest). VecLoad on a Vec of the same DMDA reads it
/// back.
///
/// XDMF: in 2D and 3D a 2DCoRectMesh / 3DCoRectMesh of (n + 1) points per axis whose cells
/// are the grid's cells (origin = first node - h/2, spacing h; values listed slowest axis
/// first, as the XDMF readers expect) and every field a cell-centred scalar Attribute.
/// In 1D a Polyvertex mesh of the nx nodes (y = 0) with node-centred Attributes; its
/// coordinates and connectivity are written inline, so the .xmf grows with nx.
///
/// The Grid must outlive the writer.
class FieldWriter {
 public:
  /// Creates (truncates) the HDF5 file; its directory must exist (see ensureDirectory).
  FieldWriter(const Grid& grid, const std::string& path);
  /// Closes the file if still open; collective. Errors are printed on rank 0, not thrown.
  ~FieldWriter();
  FieldWriter(const FieldWriter&) = delete;
  FieldWriter& operator=(const FieldWriter&) = delete;

  /// Writes the global Vec `v` (created by this grid's DM) as dataset `name`. Names are
  /// non-empty, made of letters, digits, '_', '-' and '.', and unique within the file.
  /// The Vec's own object name is restored afterwards.
  void write(Vec v, const std::string& name);
  /// Closes the HDF5 file and writes the XDMF file; idempotent.
  void close();

  bool isOpen() const { return static_cast<bool>(viewer_); }
  const std::string& path() const { return path_; }
  const std::string& xdmfPath() const { return xdmf_path_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::string xdmfText() const;

  MPI_Comm comm_;
  DM dm_;  ///< only compared with a Vec's DM, never used: the Grid owns it
  int dim_;
  std::array<PetscInt, 3> n_;
  std::array<double, 3> h_;
  std::array<double, 3> first_node_;
  std::string path_, xdmf_path_;
  OwnedViewer viewer_;
  std::vector<std::string> names_;
};

/// A CSV table (RFC 4180 quoting) written by rank 0 of `comm`; the other ranks keep no file.
/// Every row is flushed, so a history survives a crash of the run.
class CsvWriter {
 public:
  /// Creates (truncates) the file and writes the header row. Collective: throws InputError
  /// naming the path on every rank if rank 0 cannot open it.
  CsvWriter(const std::string& path, const std::vector<std::string>& header,
            MPI_Comm comm = PETSC_COMM_WORLD);
  /// Closes the file without communicating; a write error is printed to stderr.
  ~CsvWriter();
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;

  /// One row of numbers, each written with %.17g so it reads back to the same double.
  /// With a non-empty header the row must have as many values as the header (InputError).
  void row(const std::vector<double>& values);
  /// One row of ready-made cells (use format() for numbers in a mixed row).
  void row(const std::vector<std::string>& cells);
  /// Closes the file; collective, throws InputError on every rank if rank 0 failed to
  /// write. Idempotent.
  void close();

  const std::string& path() const { return path_; }
  /// A double as %.17g (round-trips exactly).
  static std::string format(double value);

 private:
  void checkWidth(size_t count) const;
  void writeCells(const std::vector<std::string>& cells);
  /// Closes the file on rank 0; returns a description of any write error, else "".
  std::string finish();

  MPI_Comm comm_;
  std::string path_;
  size_t columns_ = 0;
  std::FILE* file_ = nullptr;  ///< rank 0 only
  bool write_failed_ = false;
  bool closed_ = false;
};

}  // namespace physgrad
