"""The words of the review center, in Chinese (default) and English.

The language is the `cp_lang` cookie ("zh" or "en"), switched from the page header. Pages get
these strings in the template and, as JSON, in the page for the scripts. Category names come from
`annotate/labels.py`, so evidence images, reports and this UI use the same words.
"""

from __future__ import annotations

from collections.abc import Iterable

from citypatrol.annotate.labels import LABELS, category_label
from citypatrol.pipeline.config.models import CategoryDef
from citypatrol.pipeline.types import CaseStatus

LANGS = ("zh", "en")
DEFAULT = "zh"

_STATUS = {
    "detected": ("待审核", "detected"), "pending_review": ("待复核", "pending review"), "approved": ("已确认", "approved"),
    "dispatched": ("已派遣", "dispatched"), "handled": ("已处置", "handled"), "verifying": ("核查中", "verifying"),
    "closed": ("已结案", "closed"), "rejected": ("已驳回", "rejected"), "expired": ("已消失", "expired"),
    "reopened": ("重新出现", "reopened"), "dead_letter": ("推送失败", "delivery failed"),
}

_T: dict[str, tuple[str, str]] = {
    "app": ("城市巡查 审核中心", "citypatrol review center"),
    "nav.review": ("审核队列", "Review queue"),
    "nav.cameras": ("摄像头", "Cameras"),
    "nav.zones": ("区域编辑", "Zone editor"),
    "nav.stats": ("统计", "Statistics"),
    "logout": ("退出", "Sign out"),
    "role.reviewer": ("审核员", "reviewer"),
    "role.analyst": ("分析员", "analyst"),
    "role.admin": ("管理员", "admin"),
    "lang.switch": ("English", "中文"),
    "login.title": ("登录", "Sign in"),
    "login.user": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.failed": ("用户名或密码错误", "Wrong user name or password"),
    "login.limited": ("失败次数过多，请稍后再试", "Too many failed attempts; try again later"),
    "queue.title": ("待审核案件", "Cases to review"),
    "queue.empty": ("没有待审核的案件", "No cases waiting for review"),
    "queue.new": ("新", "new"),
    "queue.live": ("实时", "live"),
    "queue.offline": ("连接中断，正在重连", "connection lost, reconnecting"),
    "queue.newcase": ("新案件", "New case"),
    "case.category": ("类别", "Category"),
    "case.code": ("编码", "Code"),
    "case.time": ("发现时间", "Found at"),
    "case.lastseen": ("最近出现", "Last seen"),
    "case.camera": ("摄像头", "Camera"),
    "case.place": ("地点", "Place"),
    "case.grid": ("网格", "Grid"),
    "case.score": ("置信度", "Confidence"),
    "case.events": ("目击次数", "Sightings"),
    "case.status": ("状态", "Status"),
    "case.detail": ("说明", "Detail"),
    "case.model": ("识别模型", "Model"),
    "case.plate": ("车牌", "Plate"),
    "case.plate_unread": ("未识别", "unread"),
    "case.history": ("处理记录", "History"),
    "case.crop": ("局部", "Close-up"),
    "case.noimage": ("暂无证据图片", "No evidence image yet"),
    "act.confirm": ("确认", "Confirm"),
    "act.reject": ("驳回", "Reject"),
    "act.reclassify": ("改类", "Reclassify"),
    "act.merge": ("合并", "Merge"),
    "act.note": ("备注", "Note"),
    "act.next": ("下一条", "Next"),
    "act.prev": ("上一条", "Previous"),
    "act.clip": ("视频", "Clip"),
    "act.image": ("图片", "Image"),
    "act.cancel": ("取消", "Cancel"),
    "act.save": ("保存", "Save"),
    "act.help": ("快捷键", "Shortcuts"),
    "act.box": ("修正框", "Fix box"),
    "act.correct_box": ("修正了目标框", "Box corrected"),
    "box.hint": ("在图上拖动画出目标的框 · Enter 保存 · Esc 取消", "Drag a box around the object · Enter saves · Esc cancels"),
    "box.noframe": ("没有证据图片可画框", "No evidence picture to draw on"),
    "box.reviewed": ("审核员修正的框", "Box drawn by a reviewer"),
    "reject.title": ("驳回原因", "Reason for rejecting"),
    "reject.not_problem": ("误报：不是问题", "False alarm: not a problem"),
    "reject.compliant": ("合规（允许的停车/广告/经营）", "Compliant (allowed parking/ad/trade)"),
    "reject.unclear": ("画面不清，无法判断", "Picture unclear"),
    "reject.wrong_place": ("不在管控区域内", "Outside the controlled zone"),
    "reject.other": ("其他", "Other"),
    "reclassify.title": ("改为类别", "Change category to"),
    "merge.title": ("合并到（同一摄像头的案件）", "Merge into (a case of the same camera)"),
    "merge.none": ("没有可合并的案件", "No case to merge into"),
    "note.title": ("添加备注", "Add a note"),
    "done.confirm": ("已确认", "Confirmed"),
    "done.reject": ("已驳回", "Rejected"),
    "done.approve_sign": ("已登记为已审批广告", "Registered as an approved sign"),
    "sign.title": ("登记为已审批广告", "Approve this sign"),
    "sign.permit": ("审批编号", "Permit no."),
    "sign.until": ("有效期至", "Valid until"),
    "sign.submit": ("登记", "Register"),
    "sign.help": ("同一位置的同一广告在有效期内不再报案；换了内容或过期后重新报案。",
                  "The same sign here is no case until the permit runs out; a different sign is a case again."),
    "done.reclassify": ("已改类", "Reclassified"),
    "done.merge": ("已合并", "Merged"),
    "done.note": ("已添加备注", "Note added"),
    "done.box": ("框已保存", "Box saved"),
    "error": ("操作失败", "Failed"),
    "help.keys": ("Y/Enter 确认 · N 驳回 · C 改类 · M 合并 · O 备注 · B 修正框 · J/↓ 下一条 · K/↑ 上一条 · V 视频 · ? 帮助",
                  "Y/Enter confirm · N reject · C reclassify · M merge · O note · B fix box · J/↓ next · K/↑ previous · V clip · ? help"),
    "cameras.title": ("摄像头墙", "Camera wall"),
    "cameras.open": ("未结案件", "Open cases"),
    "cameras.last": ("最近案件", "Last case"),
    "cameras.nosnap": ("暂无画面", "No snapshot yet"),
    "cameras.zones": ("区域", "Zones"),
    "cameras.edit": ("编辑区域", "Edit zones"),
    "cameras.cases": ("查看案件", "Cases"),
    "health.ok": ("正常", "OK"),
    "health.degraded": ("异常", "Degraded"),
    "health.down": ("离线", "Down"),
    "health.unknown": ("状态未知", "Unknown"),
    "zones.title": ("区域编辑", "Zone editor"),
    "zones.camera": ("摄像头", "Camera"),
    "zones.version": ("版本", "Version"),
    "zones.source.config": ("来自配置文件", "from the config file"),
    "zones.source.saved": ("已保存", "saved"),
    "zones.source.none": ("尚无区域", "no zones yet"),
    "zones.noframe": ("摄像头暂无画面", "The camera gives no picture"),
    "zones.new": ("新建区域", "New zone"),
    "zones.drawhint": ("在图上单击添加顶点，双击或按 Enter 完成，Esc 取消；拖动顶点可修改",
                       "Click to add vertices, double-click or Enter to finish, Esc to cancel; drag a vertex to move it"),
    "zones.id": ("编号", "Id"),
    "zones.name": ("名称", "Name"),
    "zones.kind": ("类型", "Kind"),
    "zones.delete": ("删除", "Delete"),
    "zones.points": ("个顶点", "vertices"),
    "zones.saved": ("已保存，版本", "Saved as version"),
    "zones.conflict": ("区域已被他人修改，请刷新后重试", "Someone saved these zones meanwhile; reload and edit again"),
    "zones.readonly": ("只有管理员可以保存区域", "Only an admin can save zones"),
    "zones.unsaved": ("有未保存的修改", "Unsaved changes"),
    "zones.discard": ("放弃未保存的修改？", "Discard the unsaved changes?"),
    "zones.kind.no_parking": ("禁停区", "no parking"),
    "zones.kind.no_vending": ("禁止摆摊区", "no vending"),
    "zones.kind.bin_area": ("垃圾桶区域", "bin area"),
    "zones.kind.ad_area": ("广告管控区", "advertising area"),
    "zones.kind.approved_ad": ("已审批广告", "approved advert"),
    "stats.title": ("统计", "Statistics"),
    "stats.range": ("时间范围", "Range"),
    "stats.all": ("全部", "All"),
    "stats.days7": ("近7天", "Last 7 days"),
    "stats.days30": ("近30天", "Last 30 days"),
    "stats.total": ("案件总数", "Cases"),
    "stats.perday": ("每日案件数（按类别）", "Cases per day by category"),
    "stats.precision": ("审核确认率（按类别）", "Reviewer-judged precision by category"),
    "stats.precision.note": ("确认数 / 已审核数；改类的案件计为原类别误报", "confirmed / judged; a reclassified case counts against its first category"),
    "stats.close": ("结案用时（中位数 / P90）", "Time to close (median / p90)"),
    "stats.decide": ("审核用时（中位数 / P90）", "Time to first decision (median / p90)"),
    "stats.none": ("暂无数据", "No data"),
}


def strings(lang: str) -> dict[str, str]:
    i = 1 if lang == "en" else 0
    out = {k: v[i] for k, v in _T.items()}
    out.update({f"status.{k}": v[i] for k, v in _STATUS.items()})
    out.update({f"cat.{c.value}": (lab.en if i else lab.zh) for c, lab in LABELS.items()})
    return out


def categories(configured: Iterable[CategoryDef] = ()) -> list[dict[str, str]]:
    """The built-in categories, then those the config adds (labelled with their code names)."""
    labels = list(LABELS.items()) + [(c.name, category_label(c.name, c.title, c.title_en)) for c in configured]
    return [{"value": str(c), "zh": lab.zh, "en": lab.en, "color": lab.color} for c, lab in labels]


assert set(_STATUS) == {s.value for s in CaseStatus}, "every case status needs a label"
