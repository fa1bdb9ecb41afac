"""Tag large corpora: readers, partitioned atomic writers, local and Dask engines."""
from .core import Interrupted, OutputError, OutputMismatchError, TaggingError, TagJob, TagStats, tag_partition
from .engines import ENGINES, tag_corpus
from .readers import INPUT_FORMATS, InputError, Partition, iter_records, plan_partitions, read_partition
from .writers import OUTPUT_FORMATS, read_output_docs, read_output_records, write_partition

__all__ = [
    "ENGINES", "INPUT_FORMATS", "OUTPUT_FORMATS", "InputError", "Interrupted", "OutputError", "OutputMismatchError",
    "Partition", "TagJob", "TagStats", "TaggingError", "iter_records", "plan_partitions", "read_output_docs",
    "read_output_records", "read_partition", "tag_corpus", "tag_partition", "write_partition",
]
