// Peak resident set size of this process (VmHWM), in MiB.
#pragma once

namespace qslim::tools {
double peak_rss_mib();
}
