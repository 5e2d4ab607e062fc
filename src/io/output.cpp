#include "physgrad/io/output.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "physgrad/core/error.hpp"
#include "root_error.hpp"

namespace physgrad {
namespace {

namespace fs = std::filesystem;

using io_detail::raiseRootError;
using io_detail::rankOf;

std::string formatDouble(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

bool isPlainName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string xdmfPathFor(const std::string& h5_path) {
  fs::path p(h5_path);
  if (p.extension() == ".h5" || p.extension() == ".hdf5") return p.replace_extension(".xmf");
  return h5_path + ".xmf";
}

// "A B C" with the axes listed slowest first (z y x), the order XDMF uses for Dimensions,
// origins and spacings alike.
template <typename F>
std::string slowestFirst(int dim, F&& value_of_axis) {
  std::ostringstream os;
  for (int a = dim - 1; a >= 0; --a) {
    os << value_of_axis(a);
    if (a > 0) os << ' ';
  }
  return os.str();
}

std::string csvQuote(const std::string& cell) {
  if (cell.find_first_of(",\"\r\n") == std::string::npos) return cell;
  std::string quoted = "\"";
  for (char c : cell) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

}  // namespace

void ensureDirectory(const std::string& path, MPI_Comm comm) {
  std::string error;
  if (rankOf(comm) == 0) {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) {
      error = "cannot create directory '" + path + "': " + ec.message();
    } else if (!fs::is_directory(path, ec)) {
      error = "cannot create directory '" + path + "': a file of that name exists";
    }
  }
  raiseRootError(comm, error);
}

// ---------------------------------------------------------------------------------------
// FieldWriter

FieldWriter::FieldWriter(const Grid& grid, const std::string& path)
    : comm_(grid.comm()),
      dm_(grid.dm()),
      dim_(grid.dim()),
      n_{grid.n(0), grid.n(1), grid.n(2)},
      h_{grid.h(0), grid.h(1), grid.h(2)},
      first_node_{grid.coordinate(0, 0), grid.coordinate(1, 0), grid.coordinate(2, 0)},
      path_(path),
      xdmf_path_(xdmfPathFor(path)) {
  // HDF5 would fail on a missing directory too, but with a trace of library internals;
  // checking first gives a message that names the file.
  std::string error;
  if (rankOf(comm_) == 0) {
    const fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !fs::is_directory(parent, ec)) {
      error = "cannot create HDF5 file '" + path + "': directory '" + parent.string() +
              "' does not exist";
    }
  }
  raiseRootError(comm_, error);
  // PetscViewerHDF5Open does exactly these four calls; spelling them out keeps <hdf5.h>
  // (which petscviewerhdf5.h includes and pkg-config does not put on the include path)
  // out of the build.
  OwnedViewer viewer;
  PG_CALL(PetscViewerCreate(comm_, viewer.out()));
  PG_CALL(PetscViewerSetType(viewer, PETSCVIEWERHDF5));
  PG_CALL(PetscViewerFileSetMode(viewer, FILE_MODE_WRITE));
  PG_CALL(PetscViewerFileSetName(viewer, path.c_str()));
  viewer_ = std::move(viewer);
}

FieldWriter::~FieldWriter() {
  try {
    close();
  } catch (const std::exception& e) {
    if (rankOf(comm_) == 0) std::fprintf(stderr, "physgrad: FieldWriter: %s\n", e.what());
  }
}

void FieldWriter::write(Vec v, const std::string& name) {
  if (!viewer_) throw InputError("FieldWriter: write of '" + name + "' after close of " + path_);
  if (!isPlainName(name)) {
    throw InputError("FieldWriter: dataset name '" + name +
                     "' must be non-empty and use only letters, digits, '_', '-' and '.'");
  }
  for (const std::string& existing : names_) {
    if (existing == name) {
      throw InputError("FieldWriter: dataset '" + name + "' already written to " + path_);
    }
  }
  // Without the grid's DMDA attached, VecView would write a flat 1D dataset that the XDMF
  // description below would misrepresent.
  DM vec_dm = nullptr;
  PG_CALL(VecGetDM(v, &vec_dm));
  if (vec_dm != dm_) {
    throw InputError("FieldWriter: field '" + name + "' is not a global vector of the grid of " +
                     path_);
  }
  // VecView names the dataset after the object; keep the caller's name intact.
  const char* old_name = nullptr;
  PG_CALL(PetscObjectGetName(reinterpret_cast<PetscObject>(v), &old_name));
  const std::string saved_name = old_name ? old_name : "";
  PG_CALL(PetscObjectSetName(reinterpret_cast<PetscObject>(v), name.c_str()));
  const PetscErrorCode view_error = VecView(v, viewer_);
  PG_CALL(PetscObjectSetName(reinterpret_cast<PetscObject>(v), saved_name.c_str()));
  PG_CALL(view_error);
  names_.push_back(name);
}

void FieldWriter::close() {
  if (!viewer_) return;
  // Destroying the viewer closes the HDF5 file (collectively); do it before the XDMF file
  // appears so that a reader never finds a description of a half-written file.
  PetscViewer viewer = viewer_.release();
  PG_CALL(PetscViewerDestroy(&viewer));
  std::string error;
  if (rankOf(comm_) == 0) {
    std::ofstream out(xdmf_path_, std::ios::trunc);
    if (out) out << xdmfText();
    out.close();
    if (!out) error = "cannot write XDMF file '" + xdmf_path_ + "': " + std::strerror(errno);
  }
  raiseRootError(comm_, error);
}

std::string FieldWriter::xdmfText() const {
  const std::string h5_name = fs::path(path_).filename().string();
  const std::string dataset_dims = slowestFirst(dim_, [&](int a) { return std::to_string(n_[a]); });
  std::ostringstream os;
  os << "<?xml version=\"1.0\" ?>\n"
     << "<!DOCTYPE Xdmf SYSTEM \"Xdmf.dtd\" []>\n"
     << "<Xdmf Version=\"2.0\">\n"
     << "  <Domain>\n"
     << "    <Grid Name=\"physgrad\" GridType=\"Uniform\">\n";
  const char* center = "Cell";
  if (dim_ == 1) {
    // XDMF has no 1D structured mesh: the nodes become a point cloud on the x axis.
    center = "Node";
    const PetscInt nx = n_[0];
    os << "      <Topology TopologyType=\"Polyvertex\" NumberOfElements=\"" << nx
       << "\" NodesPerElement=\"1\">\n"
       << "        <DataItem Dimensions=\"" << nx << "\" NumberType=\"Int\" Format=\"XML\">";
    for (PetscInt i = 0; i < nx; ++i) os << (i ? " " : "") << i;
    os << "</DataItem>\n"
       << "      </Topology>\n"
       << "      <Geometry GeometryType=\"XY\">\n"
       << "        <DataItem Dimensions=\"" << nx
       << " 2\" NumberType=\"Float\" Precision=\"8\" Format=\"XML\">";
    for (PetscInt i = 0; i < nx; ++i) {
      os << (i ? " " : "") << formatDouble(first_node_[0] + static_cast<double>(i) * h_[0]) << " 0";
    }
    os << "</DataItem>\n"
       << "      </Geometry>\n";
  } else {
    // Points are the cell corners, so there is one more per axis than there are values.
    const std::string point_dims =
        slowestFirst(dim_, [&](int a) { return std::to_string(n_[a] + 1); });
    const std::string origin =
        slowestFirst(dim_, [&](int a) { return formatDouble(first_node_[a] - 0.5 * h_[a]); });
    const std::string spacing = slowestFirst(dim_, [&](int a) { return formatDouble(h_[a]); });
    const int d = dim_;
    os << "      <Topology TopologyType=\"" << d << "DCoRectMesh\" Dimensions=\"" << point_dims
       << "\"/>\n"
       << "      <Geometry GeometryType=\"" << (d == 2 ? "ORIGIN_DXDY" : "ORIGIN_DXDYDZ") << "\">\n"
       << "        <DataItem Name=\"Origin\" Dimensions=\"" << d
       << "\" NumberType=\"Float\" Precision=\"8\" Format=\"XML\">" << origin << "</DataItem>\n"
       << "        <DataItem Name=\"Spacing\" Dimensions=\"" << d
       << "\" NumberType=\"Float\" Precision=\"8\" Format=\"XML\">" << spacing << "</DataItem>\n"
       << "      </Geometry>\n";
  }
  for (const std::string& name : names_) {
    os << "      <Attribute Name=\"" << name << "\" AttributeType=\"Scalar\" Center=\"" << center
       << "\">\n"
       << "        <DataItem Dimensions=\"" << dataset_dims
       << "\" NumberType=\"Float\" Precision=\"8\" Format=\"HDF\">" << h5_name << ":/" << name
       << "</DataItem>\n"
       << "      </Attribute>\n";
  }
  os << "    </Grid>\n"
     << "  </Domain>\n"
     << "</Xdmf>\n";
  return os.str();
}

// ---------------------------------------------------------------------------------------
// CsvWriter

CsvWriter::CsvWriter(const std::string& path, const std::vector<std::string>& header, MPI_Comm comm)
    : comm_(comm), path_(path), columns_(header.size()) {
  std::string error;
  if (rankOf(comm_) == 0) {
    file_ = std::fopen(path.c_str(), "w");
    if (!file_) error = "cannot open CSV file '" + path + "': " + std::strerror(errno);
  }
  raiseRootError(comm_, error);
  if (!header.empty()) writeCells(header);
}

CsvWriter::~CsvWriter() {
  const std::string error = finish();
  if (!error.empty()) std::fprintf(stderr, "physgrad: %s\n", error.c_str());
}

std::string CsvWriter::format(double value) { return formatDouble(value); }

void CsvWriter::checkWidth(size_t count) const {
  if (closed_) throw InputError("CsvWriter: row written after close of '" + path_ + "'");
  if (columns_ != 0 && count != columns_) {
    throw InputError("CsvWriter: row of " + std::to_string(count) + " values for the " +
                     std::to_string(columns_) + " columns of '" + path_ + "'");
  }
}

void CsvWriter::row(const std::vector<double>& values) {
  checkWidth(values.size());
  if (!file_) return;
  std::vector<std::string> cells;
  cells.reserve(values.size());
  for (double v : values) cells.push_back(formatDouble(v));
  writeCells(cells);
}

void CsvWriter::row(const std::vector<std::string>& cells) {
  checkWidth(cells.size());
  writeCells(cells);
}

void CsvWriter::writeCells(const std::vector<std::string>& cells) {
  if (!file_) return;
  std::string line;
  for (size_t c = 0; c < cells.size(); ++c) {
    if (c) line += ',';
    line += csvQuote(cells[c]);
  }
  line += '\n';
  if (std::fputs(line.c_str(), file_) == EOF || std::fflush(file_) != 0) write_failed_ = true;
}

std::string CsvWriter::finish() {
  if (closed_) return "";
  closed_ = true;
  if (!file_) return "";
  const bool close_failed = std::fclose(file_) != 0;
  file_ = nullptr;
  if (write_failed_ || close_failed) return "error while writing CSV file '" + path_ + "'";
  return "";
}

void CsvWriter::close() { raiseRootError(comm_, finish()); }

}  // namespace physgrad
