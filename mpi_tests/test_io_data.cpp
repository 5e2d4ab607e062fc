// Synthetic data (soft boxes, Gaussian noise) and output files (HDF5 + XDMF, CSV,
// directories). Every assertion is on a value that is the same on all ranks (reduced or
// broadcast), so all ranks take the same branches and no collective call can deadlock.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/data/synthetic.hpp"
#include "physgrad/io/output.hpp"

namespace physgrad {
namespace {

namespace fs = std::filesystem;

MPI_Comm world() { return Environment::comm(); }

bool allTrue(bool local) {
  int in = local ? 1 : 0, out = 0;
  MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, world());
  return out == 1;
}

// Runs `check` on rank 0 only (files are looked at where they were written) and shares the
// verdict.
bool rootCheck(const std::function<bool()>& check) {
  int ok = Environment::rank() == 0 ? (check() ? 1 : 0) : 0;
  MPI_Bcast(&ok, 1, MPI_INT, 0, world());
  return ok == 1;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

GridSpec spec2d(PetscInt nx, PetscInt ny, Boundary b = Boundary::Periodic) {
  GridSpec s;
  s.dim = 2;
  s.n = {nx, ny, 1};
  s.length = {1.0, 1.0, 1.0};
  s.boundary = b;
  return s;
}

std::vector<double> softBoxes(MPI_Comm comm, const GridSpec& spec, uint64_t seed) {
  Grid grid(comm, spec);
  OwnedVec x = grid.createGlobal();
  SoftBoxesOptions opt;
  opt.seed = seed;
  fillSoftBoxes(grid, x, opt);
  return grid.gatherNatural(x);
}

// Replays the documented draw order of fillSoftBoxes to get the sum of the strengths.
double sumOfStrengths(uint64_t seed, int dim) {
  std::mt19937_64 engine(seed);
  auto uniform = [&engine]() { return static_cast<double>(engine() >> 11) * 0x1.0p-53; };
  const int count = 4 + static_cast<int>(7.0 * uniform());
  double sum = 0.0;
  for (int b = 0; b < count; ++b) {
    for (int u = 0; u < 2 * dim; ++u) uniform();  // centres, then half-sizes
    sum += uniform();
  }
  return sum;
}

size_t countDifferences(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += (a[i] != b[i]) ? 1 : 0;  // bitwise for doubles
  return diff;
}

// ------------------------------------------------------------------------------------------
// Soft boxes

class SoftBoxesTest : public ::testing::TestWithParam<GridSpec> {};

TEST_P(SoftBoxesTest, RankIndependentAndBounded) {
  const GridSpec spec = GetParam();
  const std::vector<double> distributed = softBoxes(world(), spec, 42);
  const std::vector<double> serial = softBoxes(PETSC_COMM_SELF, spec, 42);
  // The gathered field is the same on every rank; the reduction only guards the branches.
  EXPECT_TRUE(allTrue(countDifferences(distributed, serial) == 0));

  double lo = distributed[0], hi = distributed[0];
  for (double v : distributed) lo = std::min(lo, v), hi = std::max(hi, v);
  const double bound = sumOfStrengths(42, spec.dim);
  EXPECT_GE(lo, 0.0);
  EXPECT_LE(hi, bound);
  EXPECT_GT(hi, 0.0);  // at least one box is visible

  const std::vector<double> other = softBoxes(world(), spec, 43);
  EXPECT_GT(countDifferences(distributed, other), 0u);
}

GridSpec makeSpec(int dim, std::array<PetscInt, 3> n, Boundary b) {
  GridSpec s;
  s.dim = dim;
  s.n = n;
  s.boundary = b;
  return s;
}

INSTANTIATE_TEST_SUITE_P(Grids, SoftBoxesTest,
                         ::testing::Values(makeSpec(2, {64, 64, 1}, Boundary::Periodic),
                                           makeSpec(2, {48, 40, 1}, Boundary::ZeroDirichlet),
                                           makeSpec(1, {100, 1, 1}, Boundary::Periodic),
                                           makeSpec(3, {16, 12, 10}, Boundary::Periodic)));

TEST(SoftBoxes, MatchesTheReferenceResolutionOnFinerGrids) {
  // Centres and half-sizes scale with the grid, and a box of half-size r >= 1/2 covers
  // exactly 2r cells per axis, so the mean over the domain (sum of strength times area
  // fractions) agrees between 64^2 and 256^2 up to the boxes thinner than one cell
  // (r < 1/2 on the coarse grid, probability 5% per axis), whose soft edge is resolution
  // dependent: a few percent at most.
  auto mean = [](const std::vector<double>& f) {
    double s = 0.0;
    for (double v : f) s += v;
    return s / static_cast<double>(f.size());
  };
  for (uint64_t seed : {1u, 2u, 3u}) {
    const double coarse = mean(softBoxes(world(), spec2d(64, 64), seed));
    const double fine = mean(softBoxes(world(), spec2d(256, 256), seed));
    EXPECT_NEAR(fine, coarse, 0.05 * coarse) << "seed " << seed;
  }
}

TEST(SoftBoxes, RejectsBadReferenceSize) {
  Grid grid(world(), spec2d(16, 16));
  OwnedVec x = grid.createGlobal();
  SoftBoxesOptions opt;
  opt.reference_size = 0.0;
  EXPECT_THROW(fillSoftBoxes(grid, x, opt), InputError);
}

// ------------------------------------------------------------------------------------------
// Gaussian noise

TEST(GaussianNoise, RankIndependentWithTheRightMoments) {
  const GridSpec spec = spec2d(128, 128);
  const double sigma = 0.3;
  Grid grid(world(), spec);
  OwnedVec y = grid.createGlobal();
  PG_CALL(VecSet(y, 2.0));
  addGaussianNoise(grid, y, sigma, 7);
  const std::vector<double> noisy = grid.gatherNatural(y);

  Grid serial_grid(PETSC_COMM_SELF, spec);
  OwnedVec ys = serial_grid.createGlobal();
  PG_CALL(VecSet(ys, 2.0));
  addGaussianNoise(serial_grid, ys, sigma, 7);
  EXPECT_TRUE(allTrue(countDifferences(noisy, serial_grid.gatherNatural(ys)) == 0));

  // N = 16384 samples of N(0, sigma^2). The standard error of the mean is sigma/sqrt(N) =
  // sigma/128 and that of the sample standard deviation about sigma/sqrt(2N) = sigma/181; the
  // fraction within one sigma (0.6827) has standard error sqrt(0.68 * 0.32 / N) = 0.0036.
  // The tolerances below are about 5 standard errors, so a correct generator fails them with
  // probability below 1e-6 (and the seed is fixed), while a wrong scale, a bias or a
  // non-normal shape shows up far outside them.
  const double n = static_cast<double>(noisy.size());
  double sum = 0.0, sum_sq = 0.0, within = 0.0;
  for (double v : noisy) {
    const double e = v - 2.0;
    sum += e;
    sum_sq += e * e;
    within += std::abs(e) <= sigma ? 1.0 : 0.0;
  }
  const double mean = sum / n;
  const double std_dev = std::sqrt(sum_sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.04 * sigma);
  EXPECT_NEAR(std_dev, sigma, 0.03 * sigma);
  EXPECT_NEAR(within / n, 0.6827, 0.02);

  // Another seed gives other noise.
  OwnedVec z = grid.createGlobal();
  PG_CALL(VecSet(z, 2.0));
  addGaussianNoise(grid, z, sigma, 8);
  EXPECT_GT(countDifferences(noisy, grid.gatherNatural(z)), 0u);
}

TEST(GaussianNoise, ZeroSigmaChangesNothingAndNegativeThrows) {
  Grid grid(world(), spec2d(16, 16));
  OwnedVec y = grid.createGlobal();
  fillSoftBoxes(grid, y);
  const std::vector<double> before = grid.gatherNatural(y);
  addGaussianNoise(grid, y, 0.0, 1);
  EXPECT_TRUE(allTrue(countDifferences(before, grid.gatherNatural(y)) == 0));

  bool threw_naming_sigma = false;
  try {
    addGaussianNoise(grid, y, -1.0, 1);
  } catch (const InputError& e) {
    threw_naming_sigma = std::string(e.what()).find("sigma") != std::string::npos;
  }
  EXPECT_TRUE(allTrue(threw_naming_sigma));
  EXPECT_THROW(addGaussianNoise(grid, y, std::nan(""), 1), InputError);
}

// ------------------------------------------------------------------------------------------
// Output files

// A scratch directory whose name rank 0 picks (unique per run) and broadcasts.
class OutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name;
    if (Environment::rank() == 0) {
      std::random_device rd;
      name = (fs::temp_directory_path() /
              ("physgrad_io_data_" + std::to_string(rd()) + "_" + std::to_string(rd())))
                 .string();
    }
    int length = static_cast<int>(name.size());
    MPI_Bcast(&length, 1, MPI_INT, 0, world());
    name.resize(static_cast<size_t>(length));
    MPI_Bcast(name.data(), length, MPI_CHAR, 0, world());
    dir_ = name;
    ensureDirectory(dir_);
  }
  void TearDown() override {
    MPI_Barrier(world());  // nobody is still reading or writing
    if (Environment::rank() == 0) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    MPI_Barrier(world());
  }
  std::string path(const std::string& file) const { return dir_ + "/" + file; }

  std::string dir_;
};

// Reads dataset `name` of an HDF5 file into a fresh global Vec of `grid`.
OwnedVec loadField(const Grid& grid, const std::string& file, const std::string& name) {
  OwnedViewer viewer;
  PG_CALL(PetscViewerCreate(world(), viewer.out()));
  PG_CALL(PetscViewerSetType(viewer, PETSCVIEWERHDF5));
  PG_CALL(PetscViewerFileSetMode(viewer, FILE_MODE_READ));
  PG_CALL(PetscViewerFileSetName(viewer, file.c_str()));
  OwnedVec v = grid.createGlobal();
  PG_CALL(PetscObjectSetName(reinterpret_cast<PetscObject>(v.get()), name.c_str()));
  PG_CALL(VecLoad(v, viewer));
  return v;
}

bool vecEqual(Vec a, Vec b) {
  PetscBool equal = PETSC_FALSE;
  PG_CALL(VecEqual(a, b, &equal));  // collective: the answer is global
  return equal == PETSC_TRUE;
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST_F(OutputTest, FieldWriterRoundTrip2D) {
  // Non-square with nx != ny, so that a transposed layout cannot pass.
  Grid grid(world(), spec2d(33, 20));
  OwnedVec boxes = grid.createGlobal();
  fillSoftBoxes(grid, boxes);
  OwnedVec noise = grid.createGlobal();
  addGaussianNoise(grid, noise, 1.0, 3);
  PG_CALL(PetscObjectSetName(reinterpret_cast<PetscObject>(boxes.get()), "my_boxes"));

  const std::string file = path("fields.h5");
  {
    FieldWriter writer(grid, file);
    writer.write(boxes, "x_true");
    writer.write(noise, "noise");
    EXPECT_THROW(writer.write(noise, "noise"), InputError);     // duplicate
    EXPECT_THROW(writer.write(noise, "bad name"), InputError);  // not a plain name
    Grid other(world(), spec2d(20, 33));
    OwnedVec foreign = other.createGlobal();
    EXPECT_THROW(writer.write(foreign, "foreign"), InputError);  // another grid
    writer.close();
    EXPECT_FALSE(writer.isOpen());
    EXPECT_EQ(writer.xdmfPath(), path("fields.xmf"));
    EXPECT_THROW(writer.write(noise, "late"), InputError);
  }
  const char* name = nullptr;
  PG_CALL(PetscObjectGetName(reinterpret_cast<PetscObject>(boxes.get()), &name));
  EXPECT_EQ(std::string(name), "my_boxes");  // the writer restored the Vec's name

  OwnedVec boxes_back = loadField(grid, file, "x_true");
  OwnedVec noise_back = loadField(grid, file, "noise");
  EXPECT_TRUE(vecEqual(boxes, boxes_back));
  EXPECT_TRUE(vecEqual(noise, noise_back));

  const std::string xmf = path("fields.xmf");
  EXPECT_TRUE(rootCheck([&] {
    const std::string text = readFile(xmf);
    return contains(text, "2DCoRectMesh") && contains(text, "Dimensions=\"21 34\"") &&
           contains(text, "ORIGIN_DXDY") && contains(text, "Dimensions=\"20 33\"") &&
           contains(text, "fields.h5:/x_true") && contains(text, "fields.h5:/noise") &&
           contains(text, "Center=\"Cell\"") && contains(text, "</Xdmf>");
  }));
}

TEST_F(OutputTest, FieldWriterRoundTrip1DAnd3D) {
  GridSpec s1;
  s1.dim = 1;
  s1.n = {50, 1, 1};
  Grid line(world(), s1);
  GridSpec s3;
  s3.dim = 3;
  s3.n = {9, 7, 5};
  s3.boundary = Boundary::ZeroDirichlet;
  Grid box(world(), s3);
  for (const Grid* grid : {&line, &box}) {
    OwnedVec f = grid->createGlobal();
    fillSoftBoxes(*grid, f);
    addGaussianNoise(*grid, f, 0.1, 5);
    const std::string file = path(grid->dim() == 1 ? "line.h5" : "box.h5");
    {
      FieldWriter writer(*grid, file);
      writer.write(f, "f");
    }  // the destructor closes
    OwnedVec back = loadField(*grid, file, "f");
    EXPECT_TRUE(vecEqual(f, back));
  }
  EXPECT_TRUE(rootCheck([&] {
    const std::string text = readFile(path("line.xmf"));
    return contains(text, "Polyvertex") && contains(text, "Dimensions=\"50\"") &&
           contains(text, "line.h5:/f");
  }));
  EXPECT_TRUE(rootCheck([&] {
    const std::string text = readFile(path("box.xmf"));
    return contains(text, "3DCoRectMesh") && contains(text, "Dimensions=\"6 8 10\"") &&
           contains(text, "Dimensions=\"5 7 9\"") && contains(text, "ORIGIN_DXDYDZ") &&
           contains(text, "box.h5:/f");
  }));
}

TEST_F(OutputTest, FieldWriterNeedsAnExistingDirectory) {
  Grid grid(world(), spec2d(8, 8));
  EXPECT_THROW(FieldWriter(grid, path("missing/fields.h5")), InputError);
}

TEST_F(OutputTest, CsvWriterWritesHeaderAndRows) {
  const std::string file = path("history.csv");
  const double third = 1.0 / 3.0;
  CsvWriter csv(file, {"iteration", "loss", "note"});
  csv.row(std::vector<double>{0.0, third, 0.1});
  csv.row(std::vector<std::string>{"1", CsvWriter::format(1e-300), "a, \"quoted\" note"});
  EXPECT_THROW(csv.row(std::vector<double>{1.0}), InputError);  // wrong width
  csv.close();
  EXPECT_THROW(csv.row(std::vector<double>{1.0, 2.0, 3.0}), InputError);  // after close

  EXPECT_TRUE(rootCheck([&] {
    const std::string expected =
        "iteration,loss,note\n"
        "0,0.33333333333333331,0.10000000000000001\n"
        "1,1e-300,\"a, \"\"quoted\"\" note\"\n";
    return readFile(file) == expected;
  }));
  // %.17g reads back to the same double.
  EXPECT_EQ(std::strtod(CsvWriter::format(third).c_str(), nullptr), third);
}

TEST_F(OutputTest, CsvWriterReportsAnUnopenableFileOnEveryRank) {
  const std::string file = path("no/such/dir/history.csv");
  bool threw_with_path = false;
  try {
    CsvWriter csv(file, {"a"});
  } catch (const InputError& e) {
    threw_with_path = contains(e.what(), file);
  }
  EXPECT_TRUE(allTrue(threw_with_path));
}

TEST_F(OutputTest, EnsureDirectoryCreatesParentsAndReportsFailures) {
  const std::string nested = path("a/b/c");
  ensureDirectory(nested);
  ensureDirectory(nested);  // existing: nothing to do
  EXPECT_TRUE(rootCheck([&] { return fs::is_directory(nested); }));

  const std::string blocker = path("plain_file");
  if (Environment::rank() == 0) std::ofstream(blocker) << "x";
  MPI_Barrier(world());
  bool threw_with_path = false;
  try {
    ensureDirectory(blocker + "/sub");
  } catch (const InputError& e) {
    threw_with_path = contains(e.what(), blocker);
  }
  EXPECT_TRUE(allTrue(threw_with_path));
}

}  // namespace
}  // namespace physgrad
